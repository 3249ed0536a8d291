variable "name" {
  description = "Name of the function and prefix of every resource name."
  type        = string
  default     = "cellucid-edge"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,48}$", var.name))
    error_message = "name: 1-48 characters of A-Z, a-z, 0-9, '-' or '_'."
  }
}

variable "lambda_zip_path" {
  description = "Path of the function package built by `cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip` (target/lambda/cellucid-lambda/bootstrap.zip)."
  type        = string
}

variable "architecture" {
  description = "Instruction set the package was built for: x86_64 (default build) or arm64 (`cargo lambda build --arm64`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Function memory in MB (CPU scales with it; 1769 MB is one full vCPU)."
  type        = number
  default     = 1024
}

variable "timeout_seconds" {
  description = "Function timeout. API Gateway HTTP APIs stop waiting after 30 s."
  type        = number
  default     = 30
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions (caps cost and store load); null leaves the function unreserved."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the function's and the HTTP API's CloudWatch log groups."
  type        = number
  default     = 30
}

variable "log_level" {
  description = "CELLUCID_LOG: tracing filter of the function (e.g. info, cellucid_edge=debug)."
  type        = string
  default     = "info"
}

variable "create_bucket" {
  description = "Create the bucket (true) or use an existing one named bucket_name (false)."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Bucket holding the atlases (data_prefix) and the cache (cache_prefix). Must be in the provider's region."
  type        = string
}

variable "data_prefix" {
  description = "Key prefix of one AnnData-Zarr store, or of a directory of stores (served as /<id>/...). Read-only to the function. Empty = the whole bucket."
  type        = string
  default     = "atlases"

  validation {
    condition     = !startswith(var.data_prefix, "/") && !endswith(var.data_prefix, "/")
    error_message = "data_prefix: no leading or trailing slash."
  }
}

variable "cache_prefix" {
  description = "Key prefix of the derived-artifact cache: the only prefix the function may write."
  type        = string
  default     = "cellucid-cache"

  validation {
    condition     = length(var.cache_prefix) > 0 && !startswith(var.cache_prefix, "/") && !endswith(var.cache_prefix, "/")
    error_message = "cache_prefix: non-empty, no leading or trailing slash."
  }
}

variable "serve_demo" {
  description = "Serve the atlas embedded in the binary (pbmc68k_reduced) instead of the bucket's data_prefix (no read access to the data prefix is granted then)."
  type        = bool
  default     = false
}

variable "allowed_origins" {
  description = "CELLUCID_ALLOWED_ORIGINS: `*`, `default` (localhost and *.cellucid.com) or exact origins."
  type        = list(string)
  default     = ["default"]
}

variable "max_body_bytes" {
  description = "CELLUCID_MAX_BODY_BYTES: largest raw body answered inline; larger ones are redirected to the cache (a buffered response carries about 4.5 MB after base64)."
  type        = number
  default     = 4500000

  validation {
    condition     = var.max_body_bytes > 0 && var.max_body_bytes <= 4718592
    error_message = "max_body_bytes must be between 1 and 4718592 (6 MiB of base64)."
  }
}

variable "quantize" {
  description = "CELLUCID_QUANTIZE: serve gene and continuous obs values of the strict profile (/strict) quantised to 8 or 16 bits (null = float32). Run `cellucid-edge precompute --quantize` with the same value."
  type        = number
  default     = null

  validation {
    condition     = var.quantize == null ? true : contains([8, 16], var.quantize)
    error_message = "quantize must be 8, 16 or null."
  }
}

variable "share_secret" {
  description = "CELLUCID_SHARE_SECRET for share links (optional)."
  type        = string
  default     = null
  sensitive   = true
}

variable "enable_function_url" {
  description = "Create a public function URL (the simplest viewer remote)."
  type        = bool
  default     = true
}

variable "enable_http_api" {
  description = "Create an API Gateway HTTP API ($default stage, so paths carry no stage prefix)."
  type        = bool
  default     = true
}

variable "http_api_throttle" {
  description = "HTTP API default route throttling (steady requests per second and burst)."
  type = object({
    rate_limit  = number
    burst_limit = number
  })
  default = {
    rate_limit  = 100
    burst_limit = 200
  }
}

variable "manage_bucket_cors" {
  description = "Put the CORS rule redirects need (origin *, GET/HEAD) on the bucket. On an existing bucket this REPLACES its whole CORS configuration; set false and add the rule by hand if it has one."
  type        = bool
  default     = true
}

variable "tracing_mode" {
  description = "X-Ray tracing: PassThrough (no traces of our own, no extra permissions) or Active."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
