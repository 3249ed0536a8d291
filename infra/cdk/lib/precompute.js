// The distributed precompute, as infra/terraform/modules/cellucid-precompute: the precompute-task
// function (provided.al2023, 15-minute tasks) and a Step Functions state machine that asks it for
// the plan, then runs each phase as a Distributed Map over its tasks (at most maxConcurrency at
// once), retrying throttled and transient failures. The definition is the one ASL file shared with
// Terraform: infra/statemachine/precompute.asl.json.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const cdk = require('aws-cdk-lib');
const { Construct } = require('constructs');
const iam = require('aws-cdk-lib/aws-iam');
const lambda = require('aws-cdk-lib/aws-lambda');
const logs = require('aws-cdk-lib/aws-logs');
const sfn = require('aws-cdk-lib/aws-stepfunctions');

/** Path of the state machine definition shared with Terraform. */
const ASL_PATH = path.resolve(__dirname, '..', '..', 'statemachine', 'precompute.asl.json');

/** Context keys of the precompute (strings from `-c key=value` are converted by the caller). */
function precomputeSettings(str, bool, num) {
  const s = {
    enabled: bool('precompute', true),
    zipPath: str('precomputeZipPath', '../../target/lambda/cellucid-precompute/bootstrap.zip'),
    memorySize: num('precomputeMemorySize', 3008),
    timeoutSeconds: num('precomputeTimeoutSeconds', 900),
    maxConcurrency: num('precomputeMaxConcurrency', 100),
    reservedConcurrency: num('precomputeReservedConcurrency', undefined),
  };
  if (!(s.memorySize >= 128 && s.memorySize <= 10240)) throw new Error('precomputeMemorySize must be 128-10240 MB');
  if (!(s.timeoutSeconds >= 30 && s.timeoutSeconds <= 900)) throw new Error('precomputeTimeoutSeconds must be 30-900');
  if (!(s.maxConcurrency >= 1 && s.maxConcurrency <= 10000)) throw new Error('precomputeMaxConcurrency must be 1-10000');
  return s;
}

class CellucidPrecompute extends Construct {
  /**
   * @param {Construct} scope
   * @param {string} id
   * @param {{name: string, bucketName: string, bucketArn: string, dataObjects: string,
   *          cacheObjects: string, dataUrl: string, cacheUrl: string, cachePrefix: string,
   *          architecture: string, logRetentionDays: number, datasetEnvironment: object,
   *          precompute: object}} props
   */
  constructor(scope, id, props) {
    super(scope, id);
    const p = props.precompute;
    const stack = cdk.Stack.of(this);
    const functionName = `${props.name}-precompute`;
    const stateMachineName = `${props.name}-precompute`;
    const workObjects = `${props.bucketArn}/${props.cachePrefix}/_work/*`;

    // --- Task function: read data, read/write cache, delete only the run scratch ---------------
    const taskLogs = new logs.LogGroup(this, 'TaskLogs', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: props.logRetentionDays,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });
    const taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'cellucid-edge precompute tasks: read the data prefix, write the cache prefix, delete the run scratch',
      inlinePolicies: {
        DataAndCache: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [taskLogs.logGroupArn] }),
            // Without s3:ListBucket S3 answers 403 instead of 404 for a missing key.
            new iam.PolicyStatement({ sid: 'ListForNotFound', actions: ['s3:ListBucket'], resources: [props.bucketArn] }),
            new iam.PolicyStatement({ sid: 'ReadDataPrefix', actions: ['s3:GetObject'], resources: [props.dataObjects] }),
            new iam.PolicyStatement({ sid: 'ReadWriteCachePrefix', actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], resources: [props.cacheObjects] }),
            new iam.PolicyStatement({ sid: 'DeleteRunScratch', actions: ['s3:DeleteObject'], resources: [workObjects] }),
          ],
        }),
      },
    });
    const zip = path.resolve(__dirname, '..', p.zipPath);
    let code;
    if (fs.existsSync(zip)) {
      code = lambda.Code.fromAsset(zip);
    } else {
      cdk.Annotations.of(this).addWarningV2(
        'cellucid:NoPrecomputePackage',
        `${zip} not found: run \`cargo lambda build --release --bin cellucid-precompute --no-default-features --output-format zip\` before deploying; synthesising with code from CloudFormation parameters`,
      );
      code = lambda.Code.fromCfnParameters();
    }
    const task = new lambda.Function(this, 'TaskFunction', {
      functionName,
      description: 'cellucid-edge: one task of a distributed precompute (plan, transpose, pack, index, cleanup)',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      architecture: props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      code,
      role: taskRole,
      memorySize: p.memorySize,
      timeout: cdk.Duration.seconds(p.timeoutSeconds),
      reservedConcurrentExecutions: p.reservedConcurrency,
      environment: {
        ...props.datasetEnvironment,
        CELLUCID_DATA_URL: props.dataUrl,
        CELLUCID_CACHE_URL: props.cacheUrl,
        CELLUCID_LOG: 'info',
        CELLUCID_LOG_FORMAT: 'json',
      },
      logGroup: taskLogs,
      loggingFormat: lambda.LoggingFormat.JSON,
    });

    // --- State machine -----------------------------------------------------------------------
    const machineLogs = new logs.LogGroup(this, 'StateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${stateMachineName}`,
      retention: props.logRetentionDays,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });
    const stateMachineArn = stack.formatArn({ service: 'states', resource: 'stateMachine', resourceName: stateMachineName, arnFormat: cdk.ArnFormat.COLON_RESOURCE_NAME });
    const executionArns = stack.formatArn({ service: 'states', resource: 'execution', resourceName: `${stateMachineName}/*`, arnFormat: cdk.ArnFormat.COLON_RESOURCE_NAME });
    const machineRole = new iam.Role(this, 'StateMachineRole', {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
      description: 'cellucid-edge precompute state machine: invoke the task function, read item lists, write results, run Distributed Map children',
      inlinePolicies: {
        Run: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({ sid: 'InvokeTaskFunction', actions: ['lambda:InvokeFunction'], resources: [task.functionArn, `${task.functionArn}:*`] }),
            new iam.PolicyStatement({ sid: 'ItemListsAndResults', actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], resources: [workObjects] }),
            new iam.PolicyStatement({ sid: 'DistributedMapChildren', actions: ['states:StartExecution'], resources: [stateMachineArn] }),
            new iam.PolicyStatement({ sid: 'DistributedMapChildExecutions', actions: ['states:DescribeExecution', 'states:StopExecution'], resources: [executionArns] }),
            // CloudWatch log delivery and X-Ray have no resource-level permissions.
            new iam.PolicyStatement({
              sid: 'LogDelivery',
              actions: ['logs:CreateLogDelivery', 'logs:GetLogDelivery', 'logs:UpdateLogDelivery', 'logs:DeleteLogDelivery', 'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:DescribeResourcePolicies', 'logs:DescribeLogGroups'],
              resources: ['*'],
            }),
            new iam.PolicyStatement({ sid: 'XRay', actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets'], resources: ['*'] }),
          ],
        }),
      },
    });
    const machine = new sfn.CfnStateMachine(this, 'StateMachine', {
      stateMachineName,
      stateMachineType: 'STANDARD',
      roleArn: machineRole.roleArn,
      definitionString: fs.readFileSync(ASL_PATH, 'utf8'),
      definitionSubstitutions: { TaskFunctionArn: task.functionArn, MaxConcurrency: String(p.maxConcurrency) },
      loggingConfiguration: {
        level: 'ERROR',
        includeExecutionData: true,
        destinations: [{ cloudWatchLogsLogGroup: { logGroupArn: machineLogs.logGroupArn } }],
      },
      tracingConfiguration: { enabled: true },
    });
    machine.node.addDependency(machineRole);

    new cdk.CfnOutput(stack, 'PrecomputeStateMachineArn', {
      value: machine.attrArn,
      description: "Start a distributed precompute: aws stepfunctions start-execution --state-machine-arn <this> --input '{}'",
    });
    new cdk.CfnOutput(stack, 'PrecomputeTaskFunctionName', { value: task.functionName });
    this.stateMachine = machine;
    this.taskFunction = task;
  }
}

module.exports = { CellucidPrecompute, precomputeSettings, ASL_PATH };
