# A public atlas: the function, its function URL and HTTP API, a new bucket with the atlases
# under `atlases/` and the derived-artifact cache under `cellucid-cache/`.
#
#   cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip
#   terraform init && terraform apply -var bucket_name=<globally-unique-name>
#   aws s3 sync my_atlas.zarr s3://<bucket>/atlases/my_atlas.zarr
#   terraform output viewer_url

module "cellucid_edge" {
  source = "../../modules/cellucid-edge"

  name                 = var.name
  lambda_zip_path      = var.lambda_zip_path
  architecture         = var.architecture
  create_bucket        = var.create_bucket
  bucket_name          = var.bucket_name
  data_prefix          = var.data_prefix
  cache_prefix         = "cellucid-cache"
  serve_demo           = var.serve_demo
  allowed_origins      = var.allowed_origins
  reserved_concurrency = var.reserved_concurrency
  log_retention_days   = 30
}

# The distributed precompute (Step Functions + the precompute-task function) over the same
# bucket, data prefix and cache prefix. Run it after uploading an atlas:
#   cargo lambda build --release --bin cellucid-precompute --no-default-features --output-format zip
#   aws stepfunctions start-execution --state-machine-arn $(terraform output -raw precompute_state_machine_arn) --input '{}'
module "precompute" {
  source = "../../modules/cellucid-precompute"
  count  = var.enable_precompute && !var.serve_demo ? 1 : 0

  name            = var.name
  lambda_zip_path = var.precompute_zip_path
  architecture    = var.architecture
  bucket_name     = var.bucket_name
  data_prefix     = var.data_prefix
  cache_prefix    = "cellucid-cache"
  max_concurrency = var.precompute_max_concurrency

  depends_on = [module.cellucid_edge]
}
