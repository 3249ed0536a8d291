// Offline checks of the distributed precompute (node --test): the state machine definition is
// valid Amazon States Language once its placeholders are substituted (asl-validator), each phase
// is a Distributed Map over the task function, and both roles are least-privilege.
'use strict';

const fs = require('node:fs');
const test = require('node:test');
const assert = require('node:assert/strict');
const cdk = require('aws-cdk-lib');
const { Template } = require('aws-cdk-lib/assertions');
const aslValidator = require('asl-validator');
const { CellucidEdgeStack, settingsFromContext } = require('../lib/cellucid-edge-stack');
const { ASL_PATH } = require('../lib/precompute');

function synth(context) {
  const app = new cdk.App({ context: { zipPath: 'does-not-exist.zip', precomputeZipPath: 'nope.zip', ...context } });
  const settings = settingsFromContext((k) => app.node.tryGetContext(k));
  return Template.fromStack(new CellucidEdgeStack(app, 'Test', { settings }));
}

function rendered(arn = 'arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge-precompute', max = 100) {
  return JSON.parse(
    fs.readFileSync(ASL_PATH, 'utf8').replaceAll('${TaskFunctionArn}', arn).replaceAll('${MaxConcurrency}', String(max)),
  );
}

const list = (x) => (Array.isArray(x) ? x : [x]);
const tail = (resource) => {
  if (typeof resource === 'string') return resource;
  const parts = resource['Fn::Join'] ? resource['Fn::Join'][1] : [];
  const last = parts[parts.length - 1];
  return typeof last === 'string' ? last : JSON.stringify(resource);
};

test('the shared definition is valid ASL, and an invalid one is caught', () => {
  const { isValid, errors } = aslValidator(rendered());
  assert.ok(isValid, JSON.stringify(errors, null, 1));
  const broken = rendered();
  delete broken.States.RunPhase.ItemProcessor.StartAt;
  assert.equal(aslValidator(broken).isValid, false, 'the validator sees Distributed Map errors');
  const dangling = rendered();
  dangling.States.NextPhase.Next = 'Nowhere';
  assert.equal(aslValidator(dangling).isValid, false, 'the validator sees a dangling Next');
});

test('each phase is a Distributed Map of task invocations, retried on throttling', () => {
  const asl = rendered();
  const run = asl.States.RunPhase;
  assert.equal(run.Type, 'Map');
  assert.equal(run.ItemProcessor.ProcessorConfig.Mode, 'DISTRIBUTED');
  assert.equal(run.ItemProcessor.ProcessorConfig.ExecutionType, 'STANDARD', 'tasks may take 15 min (EXPRESS stops at 5)');
  assert.equal(run.MaxConcurrencyPath, '$.config.max_concurrency');
  assert.equal(run.ToleratedFailurePercentage, 0);
  const retried = run.ItemProcessor.States.RunTask.Retry.flatMap((r) => r.ErrorEquals);
  for (const e of ['Lambda.TooManyRequestsException', 'cellucid.Transient', 'Sandbox.Timedout']) assert.ok(retried.includes(e), e);
  assert.ok(!retried.includes('States.ALL'), 'permanent failures are not retried');
  // Phases in order: a loop over the plan's phases.
  assert.equal(asl.States.MorePhases.Choices[0].NumericLessThanPath, '$.plan.answer.phase_count');
  assert.equal(asl.States.NextPhase.Next, 'MorePhases');
});

test('the stack wires the definition to the task function with least privilege', () => {
  const t = synth({ bucketName: 'atlas-bucket' });
  const machines = Object.values(t.findResources('AWS::StepFunctions::StateMachine'));
  assert.equal(machines.length, 1);
  const m = machines[0].Properties;
  assert.equal(m.DefinitionString, fs.readFileSync(ASL_PATH, 'utf8'));
  assert.equal(m.DefinitionSubstitutions.MaxConcurrency, '100');
  assert.ok(m.DefinitionSubstitutions.TaskFunctionArn['Fn::GetAtt'], 'the task function ARN');
  assert.equal(m.TracingConfiguration.Enabled, true);
  const fns = t.findResources('AWS::Lambda::Function');
  const task = Object.values(fns).find((f) => f.Properties.FunctionName === 'cellucid-edge-precompute');
  assert.ok(task, 'the task function');
  assert.equal(task.Properties.Timeout, 900);
  assert.equal(task.Properties.MemorySize, 3008);
  const roles = t.findResources('AWS::IAM::Role');
  for (const [id, role] of Object.entries(roles)) {
    if (!id.includes('Precompute')) continue;
    for (const policy of role.Properties.Policies || []) {
      for (const s of policy.PolicyDocument.Statement) {
        for (const a of list(s.Action)) assert.ok(!a.includes('*'), `wildcard action ${a}`);
        if (list(s.Resource).includes('*')) assert.ok(['LogDelivery', 'XRay'].includes(s.Sid), `${s.Sid} on *`);
        const actions = list(s.Action);
        if (actions.includes('s3:PutObject')) {
          for (const r of list(s.Resource)) assert.ok(['/cellucid-cache/*', '/cellucid-cache/_work/*'].includes(tail(r)), tail(r));
        }
        if (actions.includes('s3:DeleteObject')) assert.deepEqual(list(s.Resource).map(tail), ['/cellucid-cache/_work/*']);
        if (actions.includes('lambda:InvokeFunction')) assert.equal(list(s.Resource).length, 2);
      }
    }
  }
});

test('the precompute can be left out, and is absent when serving the demo', () => {
  for (const context of [{ precompute: 'false' }, { serveDemo: true }]) {
    const t = synth(context);
    assert.equal(Object.keys(t.findResources('AWS::StepFunctions::StateMachine')).length, 0, JSON.stringify(context));
  }
  assert.throws(() => synth({ precomputeMaxConcurrency: 20000 }), /precomputeMaxConcurrency/);
});
