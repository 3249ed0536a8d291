variable "name" {
  description = "Prefix of every resource name (function `<name>-precompute`, state machine `<name>-precompute`)."
  type        = string
  default     = "cellucid-edge"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,40}$", var.name))
    error_message = "name: 1-40 characters of A-Z, a-z, 0-9, '-' or '_'."
  }
}

variable "lambda_zip_path" {
  description = "Package of the precompute-task function: `cargo lambda build --release --bin cellucid-precompute --no-default-features --output-format zip` (target/lambda/cellucid-precompute/bootstrap.zip)."
  type        = string
}

variable "architecture" {
  description = "Instruction set the package was built for: x86_64 or arm64 (`cargo lambda build --arm64`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Memory of one task in MB (128-10240; CPU scales with it, 1769 MB = one vCPU). A task holds at most about 1.2 GB (64 Mi stored values) plus one dense gene column (4 bytes per cell)."
  type        = number
  default     = 3008

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout_seconds" {
  description = "Timeout of one task (at most 900 s, Lambda's limit). A timed-out task is retried: tasks are idempotent."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout_seconds >= 30 && var.timeout_seconds <= 900
    error_message = "timeout_seconds must be between 30 and 900."
  }
}

variable "max_concurrency" {
  description = "Default number of tasks of a phase run at once (the Distributed Map's MaxConcurrency; an execution may pass its own `max_concurrency`). Keep it within the account's Lambda concurrency."
  type        = number
  default     = 100

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 10000
    error_message = "max_concurrency must be between 1 and 10000 (Distributed Map limit)."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions of the task function (caps what a run can take from the account); null leaves it unreserved."
  type        = number
  default     = null
}

variable "bucket_name" {
  description = "Bucket holding the atlases (data_prefix) and the cache (cache_prefix): the serving deployment's bucket."
  type        = string
}

variable "data_prefix" {
  description = "Key prefix of the atlas store, or of a directory of stores: read-only to the tasks. Must equal the serving function's."
  type        = string
  default     = "atlases"

  validation {
    condition     = !startswith(var.data_prefix, "/") && !endswith(var.data_prefix, "/")
    error_message = "data_prefix: no leading or trailing slash."
  }
}

variable "cache_prefix" {
  description = "Key prefix of the cache the serving function reads: the only prefix the tasks write (scratch under <cache_prefix>/_work/)."
  type        = string
  default     = "cellucid-cache"

  validation {
    condition     = length(var.cache_prefix) > 0 && !startswith(var.cache_prefix, "/") && !endswith(var.cache_prefix, "/")
    error_message = "cache_prefix: non-empty, no leading or trailing slash."
  }
}

variable "dataset_environment" {
  description = "How atlases are interpreted: CELLUCID_DATASET_NAME, CELLUCID_DATASET_ID, CELLUCID_LATENT_KEY, CELLUCID_GENE_ID_COLUMN. Must equal the serving function's, or the cache fingerprint differs and the serving function never finds the precomputed cache."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.dataset_environment) : contains([
      "CELLUCID_DATASET_NAME", "CELLUCID_DATASET_ID", "CELLUCID_LATENT_KEY", "CELLUCID_GENE_ID_COLUMN",
    ], k)])
    error_message = "dataset_environment: only CELLUCID_DATASET_NAME, CELLUCID_DATASET_ID, CELLUCID_LATENT_KEY and CELLUCID_GENE_ID_COLUMN."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's and the state machine's log groups."
  type        = number
  default     = 30
}

variable "log_level" {
  description = "CELLUCID_LOG of the task function."
  type        = string
  default     = "info"
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
