#!/usr/bin/env node
// cellucid-edge on AWS Lambda, as a CDK app (plain JavaScript). Settings come from `cdk.json`'s
// context and can be overridden per command: `npx cdk deploy -c bucketName=my-atlases`.
// The stack is environment-agnostic, so `npx cdk synth` needs neither credentials nor network.
'use strict';

const cdk = require('aws-cdk-lib');
const { CellucidEdgeStack, settingsFromContext } = require('../lib/cellucid-edge-stack');

const app = new cdk.App();
const settings = settingsFromContext((key) => app.node.tryGetContext(key));
new CellucidEdgeStack(app, process.env.CELLUCID_STACK_NAME || 'CellucidEdge', {
  settings,
  description: 'cellucid-edge: AnnData-Zarr atlases for the Cellucid viewer (Lambda, function URL, HTTP API, S3)',
});
app.synth();
