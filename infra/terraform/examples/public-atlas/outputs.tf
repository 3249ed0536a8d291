output "viewer_url" {
  description = "Share this link: the Cellucid viewer opened on the deployment."
  value       = module.cellucid_edge.viewer_url
}

output "viewer_links" {
  description = "One viewer link per viewer generation (0.0.9-era builds: root; 2026 builds with strict validation: /strict; cellucid 0.9.5: /v0.9)."
  value       = module.cellucid_edge.viewer_links
}

output "function_url" {
  description = "The function URL (the viewer's remote)."
  value       = module.cellucid_edge.function_url
}

output "http_api_url" {
  description = "The HTTP API base URL."
  value       = module.cellucid_edge.http_api_url
}

output "data_url" {
  description = "Upload AnnData-Zarr stores under this prefix."
  value       = module.cellucid_edge.data_url
}

output "cache_url" {
  description = "The function's cache prefix."
  value       = module.cellucid_edge.cache_url
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = module.cellucid_edge.log_group_name
}

output "precompute_state_machine_arn" {
  description = "Start a distributed precompute: aws stepfunctions start-execution --state-machine-arn <this> --input '{}'."
  value       = one(module.precompute[*].state_machine_arn)
}
