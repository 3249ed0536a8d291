output "state_machine_arn" {
  description = "ARN of the precompute state machine."
  value       = aws_sfn_state_machine.precompute.arn
}

output "task_function_name" {
  description = "Name of the precompute-task function."
  value       = aws_lambda_function.task.function_name
}

output "task_function_arn" {
  description = "ARN of the precompute-task function."
  value       = aws_lambda_function.task.arn
}

output "start_execution" {
  description = "How to precompute the atlas (add \"dataset\": \"<id>\" for a directory of atlases, \"max_concurrency\": N to override the default)."
  value       = "aws stepfunctions start-execution --state-machine-arn ${aws_sfn_state_machine.precompute.arn} --input '{}'"
}

output "task_policy_json" {
  description = "The task function role's inline policy (for review)."
  value       = local.task_policy
}

output "state_machine_policy_json" {
  description = "The state machine role's inline policy (for review)."
  value       = local.state_machine_policy
}

output "definition" {
  description = "The rendered state machine definition (Amazon States Language)."
  value       = local.definition
}
