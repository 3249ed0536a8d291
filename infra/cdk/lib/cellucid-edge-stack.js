// The same deployment as infra/terraform/modules/cellucid-edge: the function (provided.al2023),
// a public function URL and an API Gateway HTTP API in front of it, the bucket (or an existing
// one) holding the atlases (data prefix, read-only) and the derived-artifact cache (cache prefix,
// the only writable place), least-privilege IAM and log groups with retention.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const cdk = require('aws-cdk-lib');
const { AccessLogFormat } = require('aws-cdk-lib/aws-apigateway');
const apigw = require('aws-cdk-lib/aws-apigatewayv2');
const integrations = require('aws-cdk-lib/aws-apigatewayv2-integrations');
const iam = require('aws-cdk-lib/aws-iam');
const lambda = require('aws-cdk-lib/aws-lambda');
const logs = require('aws-cdk-lib/aws-logs');
const s3 = require('aws-cdk-lib/aws-s3');
// distprecompute: the distributed precompute (Step Functions + task function), lib/precompute.js.
const { CellucidPrecompute, precomputeSettings } = require('./precompute');

const VIEWER = 'https://www.cellucid.com/?remote=';

/** Settings from CDK context (strings from `-c key=value` are converted). */
function settingsFromContext(get) {
  const str = (key, fallback) => {
    const v = get(key);
    return v === undefined || v === null || v === '' ? fallback : String(v);
  };
  const bool = (key, fallback) => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return fallback;
    return v === true || v === 'true' || v === '1';
  };
  const num = (key, fallback) => {
    const v = get(key);
    if (v === undefined || v === null || v === '' || v === 'null') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`context ${key}=${v} is not a number`);
    return n;
  };
  const trimSlashes = (p) => p.replace(/^\/+|\/+$/g, '');
  const settings = {
    name: str('name', 'cellucid-edge'),
    bucketName: str('bucketName', undefined),
    createBucket: bool('createBucket', true),
    dataPrefix: trimSlashes(str('dataPrefix', 'atlases')),
    cachePrefix: trimSlashes(str('cachePrefix', 'cellucid-cache')),
    serveDemo: bool('serveDemo', false),
    architecture: str('architecture', 'x86_64'),
    zipPath: str('zipPath', '../../target/lambda/cellucid-lambda/bootstrap.zip'),
    allowedOrigins: str('allowedOrigins', 'default'),
    maxBodyBytes: num('maxBodyBytes', 4500000),
    memorySize: num('memorySize', 1024),
    timeoutSeconds: num('timeoutSeconds', 30),
    reservedConcurrency: num('reservedConcurrency', undefined),
    logRetentionDays: num('logRetentionDays', 30),
    enableFunctionUrl: bool('enableFunctionUrl', true),
    enableHttpApi: bool('enableHttpApi', true),
    httpApiRateLimit: num('httpApiRateLimit', 100),
    httpApiBurstLimit: num('httpApiBurstLimit', 200),
    shareSecret: str('shareSecret', undefined),
    // CELLUCID_QUANTIZE: quantised gene and continuous obs values under /strict (8 or 16).
    quantize: num('quantize', undefined),
    precompute: precomputeSettings(str, bool, num),
  };
  if (!['x86_64', 'arm64'].includes(settings.architecture)) {
    throw new Error(`architecture must be x86_64 or arm64, not ${settings.architecture}`);
  }
  if (!settings.cachePrefix) throw new Error('cachePrefix must not be empty');
  const d = `${settings.dataPrefix}/`;
  const c = `${settings.cachePrefix}/`;
  if (settings.dataPrefix && (c.startsWith(d) || d.startsWith(c))) {
    throw new Error('cachePrefix and dataPrefix must not contain each other: the function may write only the cache prefix');
  }
  if (settings.quantize !== undefined && ![8, 16].includes(settings.quantize)) {
    throw new Error(`quantize must be 8 or 16, not ${settings.quantize}`);
  }
  if (!(settings.maxBodyBytes > 0 && settings.maxBodyBytes <= 4718592)) {
    throw new Error('maxBodyBytes must be between 1 and 4718592 (6 MiB of base64)');
  }
  return settings;
}

/** `https://www.cellucid.com/?remote=<url-encoded https://host>` for a host token. */
function viewerUrl(host) {
  return cdk.Fn.join('', [VIEWER, 'https%3A%2F%2F', host]);
}

/**
 * One viewer link per viewer generation (what `cellucid-edge serve` prints): the seed protocol
 * at the root, the strict profile under /strict, the 0.9 protocol under /v0.9. Each output's
 * description says which viewer it is for.
 */
function addViewerLinkOutputs(scope, prefix, host) {
  const links = [
    ['SeedViewerLink', '0.0.9-era viewer builds (seed protocol, byte-exact, at the root)', ''],
    ['StrictViewerLink', '2026 viewer builds with strict validation (strict profile at /strict)', '%2Fstrict'],
    ['V09ViewerLink', 'cellucid 0.9.5 (raw AnnData with ranged reads under /v0.9)', '%2Fv0.9'],
  ];
  for (const [id, viewer, suffix] of links) {
    new cdk.CfnOutput(scope, `${prefix}${id}`, {
      value: cdk.Fn.join('', [VIEWER, 'https%3A%2F%2F', host, suffix]),
      description: `Viewer link for ${viewer}`,
    });
  }
}

class CellucidEdgeStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);
    const s = props.settings;

    // --- Bucket -------------------------------------------------------------------------------
    let bucketName;
    if (s.createBucket) {
      const bucket = new s3.Bucket(this, 'Bucket', {
        bucketName: s.bucketName, // undefined: CloudFormation picks a unique name
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        // The AWS managed key: presigned GETs signed by the function's role keep working.
        encryption: s3.BucketEncryption.KMS_MANAGED,
        bucketKeyEnabled: true,
        enforceSSL: true,
        versioned: true,
        lifecycleRules: [
          {
            id: 'tidy',
            abortIncompleteMultipartUploadAfter: cdk.Duration.days(7),
            noncurrentVersionExpiration: cdk.Duration.days(30),
          },
        ],
        // Large responses are 307 redirects to presigned cache objects; after a cross-origin
        // redirect browsers send `Origin: null`, so origin `*` (safe: no credentials are sent).
        cors: [
          {
            allowedMethods: [s3.HttpMethods.GET, s3.HttpMethods.HEAD],
            allowedOrigins: ['*'],
            allowedHeaders: ['*'],
            exposedHeaders: ['Content-Length', 'Content-Encoding', 'Content-Type', 'ETag'],
            maxAge: 3600,
          },
        ],
        removalPolicy: cdk.RemovalPolicy.RETAIN,
      });
      bucketName = bucket.bucketName;
    } else {
      if (!s.bucketName) throw new Error('createBucket=false needs bucketName');
      // An imported bucket's CORS rule is not managed here: add the rule of the BucketCorsRule
      // output by hand.
      bucketName = s.bucketName;
    }
    const bucketArn = cdk.Arn.format({ service: 's3', region: '', account: '', resource: bucketName }, this);
    const dataObjects = s.dataPrefix ? `${bucketArn}/${s.dataPrefix}/*` : `${bucketArn}/*`;
    const cacheObjects = `${bucketArn}/${s.cachePrefix}/*`;
    const dataUrl = s.dataPrefix ? `s3://${bucketName}/${s.dataPrefix}` : `s3://${bucketName}`;
    const cacheUrl = `s3://${bucketName}/${s.cachePrefix}`;

    // --- Logs ---------------------------------------------------------------------------------
    const functionLogs = new logs.LogGroup(this, 'FunctionLogs', {
      logGroupName: `/aws/lambda/${s.name}`,
      retention: s.logRetentionDays,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });

    // --- Role: own logs, data prefix read-only, cache prefix read/write (never delete) --------
    // s3:ListBucket on the bucket: without it S3 answers 403 instead of 404 for a missing key
    // (cache misses, detection of a directory of atlases). It reveals key names only.
    const statements = [
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [`${functionLogs.logGroupArn}`],
      }),
      new iam.PolicyStatement({
        sid: 'ListForNotFound',
        actions: ['s3:ListBucket'],
        resources: [bucketArn],
      }),
      new iam.PolicyStatement({
        sid: 'ReadWriteCachePrefix',
        actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
        resources: [cacheObjects],
      }),
    ];
    if (!s.serveDemo) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'ReadDataPrefix',
          actions: ['s3:GetObject'],
          resources: [dataObjects],
        }),
      );
    }
    const role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'cellucid-edge function: read the data prefix, read/write the cache prefix',
      inlinePolicies: { DataAndCache: new iam.PolicyDocument({ statements }) },
    });

    // --- Function -----------------------------------------------------------------------------
    const zip = path.resolve(__dirname, '..', s.zipPath);
    let code;
    if (fs.existsSync(zip)) {
      code = lambda.Code.fromAsset(zip);
    } else {
      // Lets `cdk synth` run before the package is built (CI); deploy needs the zip.
      cdk.Annotations.of(this).addWarningV2(
        'cellucid:NoPackage',
        `${zip} not found: run \`cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip\` before deploying; synthesising with code from CloudFormation parameters`,
      );
      code = lambda.Code.fromCfnParameters();
    }
    const environment = {
      CELLUCID_CACHE_URL: cacheUrl,
      CELLUCID_ALLOWED_ORIGINS: s.allowedOrigins,
      CELLUCID_MAX_BODY_BYTES: String(s.maxBodyBytes),
      CELLUCID_LOG: 'info',
      CELLUCID_LOG_FORMAT: 'json',
    };
    if (!s.serveDemo) environment.CELLUCID_DATA_URL = dataUrl;
    if (s.shareSecret) environment.CELLUCID_SHARE_SECRET = s.shareSecret;
    if (s.quantize !== undefined) environment.CELLUCID_QUANTIZE = String(s.quantize);
    const fn = new lambda.Function(this, 'Function', {
      functionName: s.name,
      description: 'cellucid-edge: AnnData-Zarr atlases for the Cellucid viewer',
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      architecture: s.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      code,
      role,
      memorySize: s.memorySize,
      timeout: cdk.Duration.seconds(s.timeoutSeconds),
      reservedConcurrentExecutions: s.reservedConcurrency,
      environment,
      logGroup: functionLogs,
      loggingFormat: lambda.LoggingFormat.JSON,
    });

    // --- Public function URL (no CORS config: the function answers CORS itself) ---------------
    if (s.enableFunctionUrl) {
      const url = fn.addFunctionUrl({
        authType: lambda.FunctionUrlAuthType.NONE,
        invokeMode: lambda.InvokeMode.BUFFERED,
      });
      const host = cdk.Fn.select(2, cdk.Fn.split('/', url.url));
      new cdk.CfnOutput(this, 'FunctionUrl', { value: cdk.Fn.join('', ['https://', host]), description: 'The viewer remote (function URL)' });
      new cdk.CfnOutput(this, 'ViewerUrl', { value: viewerUrl(host), description: 'Share this: the Cellucid viewer opened on the function URL' });
      new cdk.CfnOutput(this, 'RemoteUrlV09', { value: cdk.Fn.join('', ['https://', host, '/v0.9']), description: 'Base URL of the Cellucid 0.9 protocol (under /v0.9, beside the seed protocol at the root)' });
      new cdk.CfnOutput(this, 'ViewerUrlV09', { value: cdk.Fn.join('', [VIEWER, 'https%3A%2F%2F', host, '%2Fv0.9']), description: 'The viewer opened on the 0.9 protocol base URL (unverified for the hosted viewer; see README)' });
      new cdk.CfnOutput(this, 'RemoteUrlStrict', { value: cdk.Fn.join('', ['https://', host, '/strict']), description: 'Base URL of the strict profile (2026 viewer builds with strict validation), under /strict' });
      addViewerLinkOutputs(this, 'FunctionUrl', host);
    }

    // --- HTTP API ($default stage: paths carry no stage prefix) ---------------------------------
    if (s.enableHttpApi) {
      const api = new apigw.HttpApi(this, 'HttpApi', {
        apiName: s.name,
        description: 'cellucid-edge: AnnData-Zarr atlases for the Cellucid viewer',
        defaultIntegration: new integrations.HttpLambdaIntegration('Function', fn, {
          payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
        }),
        createDefaultStage: false,
      });
      const accessLogs = new logs.LogGroup(this, 'HttpApiAccessLogs', {
        logGroupName: `/aws/apigateway/${s.name}`,
        retention: s.logRetentionDays,
        removalPolicy: cdk.RemovalPolicy.DESTROY,
      });
      new apigw.HttpStage(this, 'DefaultStage', {
        httpApi: api,
        stageName: '$default',
        autoDeploy: true,
        throttle: { rateLimit: s.httpApiRateLimit, burstLimit: s.httpApiBurstLimit },
        accessLogSettings: {
          destination: new apigw.LogGroupLogDestination(accessLogs),
          format: AccessLogFormat.custom(
            JSON.stringify({
              requestId: '$context.requestId',
              ip: '$context.identity.sourceIp',
              requestTime: '$context.requestTime',
              method: '$context.httpMethod',
              path: '$context.path',
              status: '$context.status',
              responseLength: '$context.responseLength',
              integrationError: '$context.integrationErrorMessage',
              latencyMs: '$context.responseLatency',
            }),
          ),
        },
      });
      const host = `${api.apiId}.execute-api.${this.region}.${this.urlSuffix}`;
      new cdk.CfnOutput(this, 'HttpApiUrl', { value: `https://${host}`, description: 'HTTP API base URL' });
      new cdk.CfnOutput(this, 'ViewerUrlHttpApi', { value: viewerUrl(host), description: 'The Cellucid viewer opened on the HTTP API' });
      addViewerLinkOutputs(this, 'HttpApi', host);
    }

    // --- Distributed precompute (distprecompute) ------------------------------------------------
    if (s.precompute.enabled && !s.serveDemo) {
      const datasetEnvironment = {};
      new CellucidPrecompute(this, 'Precompute', {
        name: s.name,
        bucketName,
        bucketArn,
        dataObjects,
        cacheObjects,
        dataUrl,
        cacheUrl,
        cachePrefix: s.cachePrefix,
        architecture: s.architecture,
        logRetentionDays: s.logRetentionDays,
        datasetEnvironment,
        precompute: s.precompute,
      });
    }

    new cdk.CfnOutput(this, 'BucketName', { value: bucketName });
    if (!s.serveDemo) new cdk.CfnOutput(this, 'DataUrl', { value: dataUrl, description: 'Upload AnnData-Zarr stores here' });
    new cdk.CfnOutput(this, 'CacheUrl', { value: cacheUrl });
    new cdk.CfnOutput(this, 'BucketCorsRule', {
      value: JSON.stringify({ AllowedMethods: ['GET', 'HEAD'], AllowedOrigins: ['*'], AllowedHeaders: ['*'], ExposeHeaders: ['Content-Length', 'Content-Encoding', 'Content-Type', 'ETag'], MaxAgeSeconds: 3600 }),
      description: 'CORS rule redirects to presigned cache URLs need (set on an existing bucket by hand)',
    });
  }
}

module.exports = { CellucidEdgeStack, settingsFromContext };
