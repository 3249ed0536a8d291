// Offline checks of the CDK stack (node --test): least-privilege IAM and the public wiring.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdk = require('aws-cdk-lib');
const { Template, Match } = require('aws-cdk-lib/assertions');
const { CellucidEdgeStack, settingsFromContext } = require('../lib/cellucid-edge-stack');

function synth(context) {
  // The serving stack alone; the distributed precompute has its own test (precompute.test.js).
  const app = new cdk.App({ context: { zipPath: 'does-not-exist.zip', precompute: 'false', ...context } });
  const settings = settingsFromContext((k) => app.node.tryGetContext(k));
  return Template.fromStack(new CellucidEdgeStack(app, 'Test', { settings }));
}

function statements(template) {
  const roles = template.findResources('AWS::IAM::Role');
  const out = [];
  for (const role of Object.values(roles)) {
    for (const policy of role.Properties.Policies || []) out.push(...policy.PolicyDocument.Statement);
  }
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
    out.push(...policy.Properties.PolicyDocument.Statement);
  }
  return out;
}

const list = (x) => (Array.isArray(x) ? x : [x]);
// The object part of an ARN built by Fn::Join (the last literal piece), e.g. "/atlases/*".
const tail = (resource) => {
  if (typeof resource === 'string') return resource;
  const parts = resource['Fn::Join'] ? resource['Fn::Join'][1] : [];
  const last = parts[parts.length - 1];
  return typeof last === 'string' ? last : JSON.stringify(resource);
};

test('writes only under the cache prefix, reads only data and cache prefixes, no wildcards', () => {
  const all = statements(synth({ bucketName: 'atlas-bucket' }));
  assert.ok(all.length >= 4);
  for (const s of all) {
    for (const a of list(s.Action)) assert.ok(!a.includes('*'), `wildcard action ${a}`);
    for (const r of list(s.Resource)) assert.notEqual(r, '*', `statement ${s.Sid} on every resource`);
    const actions = list(s.Action);
    if (actions.some((a) => ['s3:PutObject', 's3:AbortMultipartUpload'].includes(a))) {
      assert.deepEqual(list(s.Resource).map(tail), ['/cellucid-cache/*']);
    }
    if (actions.includes('s3:GetObject')) {
      for (const r of list(s.Resource)) assert.ok(['/cellucid-cache/*', '/atlases/*'].includes(tail(r)), tail(r));
    }
    assert.ok(!actions.some((a) => a.startsWith('s3:Delete')), 'never deletes');
  }
});

test('serving the embedded demo reads no data prefix', () => {
  const t = synth({ serveDemo: true });
  for (const s of statements(t)) {
    for (const r of list(s.Resource)) assert.notEqual(tail(r), '/atlases/*');
  }
  t.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ CELLUCID_CACHE_URL: Match.anyValue() }) },
  });
  const fn = Object.values(t.findResources('AWS::Lambda::Function'))[0];
  assert.equal(fn.Properties.Environment.Variables.CELLUCID_DATA_URL, undefined);
});

test('public function URL: both invoke statements, buffered, no URL-level CORS', () => {
  const t = synth({});
  t.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'NONE', InvokeMode: 'BUFFERED', Cors: Match.absent() });
  t.hasResourceProperties('AWS::Lambda::Permission', { Action: 'lambda:InvokeFunctionUrl', FunctionUrlAuthType: 'NONE' });
  t.hasResourceProperties('AWS::Lambda::Permission', { Action: 'lambda:InvokeFunction', Principal: '*', InvokedViaFunctionUrl: true });
  t.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: '$default', AutoDeploy: true });
  t.hasResourceProperties('AWS::Lambda::Function', { Runtime: 'provided.al2023', Handler: 'bootstrap', Architectures: ['x86_64'] });
  t.hasResourceProperties('AWS::S3::Bucket', {
    CorsConfiguration: { CorsRules: [Match.objectLike({ AllowedOrigins: ['*'], AllowedMethods: ['GET', 'HEAD'] })] },
  });
  t.hasOutput('ViewerUrl', { Value: { 'Fn::Join': ['', Match.arrayWith(['https://www.cellucid.com/?remote=https%3A%2F%2F'])] } });
  t.hasOutput('ViewerUrlV09', { Value: { 'Fn::Join': ['', Match.arrayWith(['https://www.cellucid.com/?remote=https%3A%2F%2F', '%2Fv0.9'])] } });
});

test('one viewer link per generation, saying which viewer it is for', () => {
  const t = synth({});
  for (const prefix of ['FunctionUrl', 'HttpApi']) {
    t.hasOutput(`${prefix}SeedViewerLink`, {
      Description: Match.stringLikeRegexp('0\\.0\\.9-era'),
      Value: { 'Fn::Join': ['', Match.arrayWith(['https://www.cellucid.com/?remote=https%3A%2F%2F', ''])] },
    });
    t.hasOutput(`${prefix}StrictViewerLink`, {
      Description: Match.stringLikeRegexp('strict validation'),
      Value: { 'Fn::Join': ['', Match.arrayWith(['https://www.cellucid.com/?remote=https%3A%2F%2F', '%2Fstrict'])] },
    });
    t.hasOutput(`${prefix}V09ViewerLink`, {
      Description: Match.stringLikeRegexp('cellucid 0\\.9\\.5'),
      Value: { 'Fn::Join': ['', Match.arrayWith(['https://www.cellucid.com/?remote=https%3A%2F%2F', '%2Fv0.9'])] },
    });
  }
});

test('quantisation reaches the function and is validated', () => {
  const t = synth({ quantize: '8' });
  t.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ CELLUCID_QUANTIZE: '8' }) },
  });
  assert.throws(() => synth({ quantize: '12' }), /quantize must be 8 or 16/);
});

test('existing bucket, arm64 and reserved concurrency', () => {
  const t = synth({ createBucket: false, bucketName: 'lab-shared', architecture: 'arm64', reservedConcurrency: 5 });
  t.resourceCountIs('AWS::S3::Bucket', 0);
  t.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['arm64'], ReservedConcurrentExecutions: 5 });
});

test('overlapping prefixes are refused', () => {
  assert.throws(() => synth({ dataPrefix: 'atlases', cachePrefix: 'atlases/cache' }), /must not contain each other/);
});
