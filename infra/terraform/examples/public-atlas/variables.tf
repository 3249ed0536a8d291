variable "region" {
  description = "AWS region of the function and the bucket."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Function name (and prefix of the other resources)."
  type        = string
  default     = "cellucid-edge"
}

variable "bucket_name" {
  description = "Globally unique bucket name for the atlases and the cache."
  type        = string
}

variable "create_bucket" {
  description = "Create the bucket (false: use an existing bucket named bucket_name)."
  type        = bool
  default     = true
}

variable "data_prefix" {
  description = "Where the AnnData-Zarr stores are uploaded (one store, or one directory per atlas)."
  type        = string
  default     = "atlases"
}

variable "serve_demo" {
  description = "Serve the demo atlas built into the function instead of the bucket (a first deployment that works before any upload)."
  type        = bool
  default     = false
}

variable "architecture" {
  description = "x86_64 (default) or arm64 (build with `cargo lambda build --release --arm64 --output-format zip`)."
  type        = string
  default     = "x86_64"
}

variable "lambda_zip_path" {
  description = "The package built by cargo lambda."
  type        = string
  default     = "../../../../target/lambda/cellucid-lambda/bootstrap.zip"
}

variable "allowed_origins" {
  description = "Viewer origins allowed to read responses (`*`, `default`, or exact origins)."
  type        = list(string)
  default     = ["default"]
}

variable "reserved_concurrency" {
  description = "Optional cap on concurrent executions."
  type        = number
  default     = null
}

variable "enable_precompute" {
  description = "Deploy the distributed precompute (a Step Functions state machine and the precompute-task function)."
  type        = bool
  default     = true
}

variable "precompute_zip_path" {
  description = "The precompute-task package built by cargo lambda."
  type        = string
  default     = "../../../../target/lambda/cellucid-precompute/bootstrap.zip"
}

variable "precompute_max_concurrency" {
  description = "Tasks of a precompute phase run at once (an execution may pass its own max_concurrency)."
  type        = number
  default     = 100
}
