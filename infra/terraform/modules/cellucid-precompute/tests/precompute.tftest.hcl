# Offline checks of the precompute module (mocked provider): least-privilege IAM of both roles,
# the rendered state machine (one Distributed Map per phase, the task function wired in, retries
# on throttling), and the wiring of the function.

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }

  mock_resource "aws_lambda_function" {
    defaults = {
      arn = "arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge-precompute"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/cellucid-edge-precompute"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/cellucid-edge-precompute"
    }
  }

  mock_resource "aws_sfn_state_machine" {
    defaults = {
      arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:cellucid-edge-precompute"
    }
  }
}

variables {
  bucket_name  = "atlas-bucket"
  data_prefix  = "atlases"
  cache_prefix = "cellucid-cache"
  # Any existing file: under the mock provider nothing is uploaded, only hashed.
  lambda_zip_path = "versions.tf"
}

run "least_privilege_and_a_distributed_map_per_phase" {
  command = apply

  # --- the task function's role ----------------------------------------------------------------
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : r != "*" && !endswith(r, ":::atlas-bucket/*")])
    ])
    error_message = "The task role targets no wildcard resource and not every object of the bucket."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      alltrue([for a in flatten([s.Action]) : !strcontains(a, "*")])
    ])
    error_message = "No wildcard actions for the tasks."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::atlas-bucket/cellucid-cache/*"]
      if contains(flatten([s.Action]), "s3:PutObject")
    ])
    error_message = "Tasks write the cache prefix only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::atlas-bucket/cellucid-cache/_work/*"]
      if contains(flatten([s.Action]), "s3:DeleteObject")
    ])
    error_message = "Tasks delete only the run scratch."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : contains([
        "arn:aws:s3:::atlas-bucket/atlases/*",
        "arn:aws:s3:::atlas-bucket/cellucid-cache/*",
      ], r)])
      if contains(flatten([s.Action]), "s3:GetObject")
    ])
    error_message = "Tasks read the data and cache prefixes only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.task.policy).Statement :
      !anytrue([for a in flatten([s.Action]) : contains(["s3:DeleteObjectVersion", "s3:PutBucketPolicy", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"], a)])
    ])
    error_message = "Tasks never delete versions or change bucket/object policies."
  }

  # --- the state machine's role ------------------------------------------------------------------
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement :
      contains(["LogDelivery", "XRay"], s.Sid)
      if contains(flatten([s.Resource]), "*")
    ])
    error_message = "Only log delivery and X-Ray (no resource-level permissions) use Resource \"*\"."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement :
      flatten([s.Resource]) == [
        "arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge-precompute",
        "arn:aws:lambda:eu-west-1:123456789012:function:cellucid-edge-precompute:*",
      ]
      if contains(flatten([s.Action]), "lambda:InvokeFunction")
    ])
    error_message = "The state machine invokes the task function only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:s3:::atlas-bucket/cellucid-cache/_work/*"]
      if anytrue([for a in flatten([s.Action]) : startswith(a, "s3:")])
    ])
    error_message = "The state machine reads item lists and writes results under the run scratch only."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.state_machine.policy).Statement :
      flatten([s.Resource]) == ["arn:aws:states:eu-west-1:123456789012:stateMachine:cellucid-edge-precompute"]
      if contains(flatten([s.Action]), "states:StartExecution")
    ])
    error_message = "The state machine starts only its own (Distributed Map child) executions."
  }

  assert {
    condition     = jsondecode(aws_iam_role.state_machine.assume_role_policy).Statement[0].Principal.Service == "states.amazonaws.com"
    error_message = "Only Step Functions assumes the state machine role."
  }

  # --- the definition ------------------------------------------------------------------------------
  assert {
    condition     = jsondecode(aws_sfn_state_machine.precompute.definition).States.RunPhase.ItemProcessor.ProcessorConfig.Mode == "DISTRIBUTED"
    error_message = "Each phase is a Distributed Map."
  }

  assert {
    condition = (
      jsondecode(aws_sfn_state_machine.precompute.definition).States.Plan.Parameters.FunctionName == aws_lambda_function.task.arn &&
      jsondecode(aws_sfn_state_machine.precompute.definition).States.RunPhase.ItemProcessor.States.RunTask.Parameters.FunctionName == aws_lambda_function.task.arn
    )
    error_message = "The plan and every task invoke the task function."
  }

  assert {
    condition     = strcontains(jsondecode(aws_sfn_state_machine.precompute.definition).States.Configure.Parameters["config.$"], "\"max_concurrency\": 100}")
    error_message = "The default concurrency is rendered into the definition."
  }

  assert {
    condition = contains(flatten([
      for r in jsondecode(aws_sfn_state_machine.precompute.definition).States.RunPhase.ItemProcessor.States.RunTask.Retry : r.ErrorEquals
    ]), "Lambda.TooManyRequestsException")
    error_message = "Throttled invocations are retried."
  }

  assert {
    condition     = !strcontains(aws_sfn_state_machine.precompute.definition, "$${")
    error_message = "Every placeholder of the ASL file is substituted."
  }

  # --- the function --------------------------------------------------------------------------------
  assert {
    condition = (
      aws_lambda_function.task.environment[0].variables["CELLUCID_DATA_URL"] == "s3://atlas-bucket/atlases" &&
      aws_lambda_function.task.environment[0].variables["CELLUCID_CACHE_URL"] == "s3://atlas-bucket/cellucid-cache"
    )
    error_message = "The tasks read the data prefix and write the cache prefix the serving function uses."
  }

  assert {
    condition     = aws_lambda_function.task.timeout == 900 && aws_lambda_function.task.memory_size == 3008
    error_message = "15-minute tasks with 3 GB by default."
  }
}

run "concurrency_and_dataset_settings" {
  command = apply

  variables {
    max_concurrency      = 1000
    reserved_concurrency = 1000
    dataset_environment  = { CELLUCID_GENE_ID_COLUMN = "symbol" }
  }

  assert {
    condition     = strcontains(jsondecode(aws_sfn_state_machine.precompute.definition).States.Configure.Parameters["config.$"], "\"max_concurrency\": 1000}")
    error_message = "max_concurrency reaches the definition."
  }

  assert {
    condition     = aws_lambda_function.task.environment[0].variables["CELLUCID_GENE_ID_COLUMN"] == "symbol"
    error_message = "Dataset settings reach the task function (they must match the serving function's)."
  }

  assert {
    condition     = aws_lambda_function.task.reserved_concurrent_executions == 1000
    error_message = "Reserved concurrency is honoured."
  }
}

run "cache_inside_data_is_refused" {
  command = plan

  variables {
    data_prefix  = "atlases"
    cache_prefix = "atlases/cache"
  }

  expect_failures = [aws_iam_role_policy.task]
}

run "unknown_dataset_setting_is_refused" {
  command = plan

  variables {
    dataset_environment = { AWS_SECRET_ACCESS_KEY = "x" }
  }

  expect_failures = [var.dataset_environment]
}

run "too_long_a_timeout_is_refused" {
  command = plan

  variables {
    timeout_seconds = 3600
  }

  expect_failures = [var.timeout_seconds]
}
