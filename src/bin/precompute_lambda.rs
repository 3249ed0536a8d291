//! `cellucid-precompute`: the precompute-task Lambda function (`bootstrap` for
//! `provided.al2023`), the worker of the Step Functions state machine in `infra/`.
//!
//! Configuration comes from the environment (see `cellucid_edge::precompute_lambda::env`); build
//! with `cargo lambda build --release --bin cellucid-precompute --no-default-features
//! --output-format zip`. Locally: `cargo lambda watch` (with `--env-var CELLUCID_DATA_URL=…
//! --env-var CELLUCID_CACHE_URL=…`), then `cargo lambda invoke cellucid-precompute --data-file
//! events/precompute-task-artifacts.json`.

use std::process::ExitCode;
use std::sync::Arc;

use cellucid_edge::precompute_lambda::{self, TaskConfig, TaskHandler};

fn main() -> ExitCode {
    let log = std::env::var("CELLUCID_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("CELLUCID_LOG_FORMAT").as_deref() == Ok("text") {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    let handler = match TaskConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|config| TaskHandler::new(config).map_err(|e| e.to_string()))
    {
        Ok(handler) => Arc::new(handler),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(precompute_lambda::run(handler)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "cellucid_edge::precompute", "runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
