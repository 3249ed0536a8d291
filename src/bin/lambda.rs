//! `cellucid-lambda`: the AWS Lambda function (`bootstrap` for `provided.al2023`).
//!
//! Configuration comes from the environment (see `cellucid_edge::lambda::env`); build with
//! `cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip`
//! (without the default `h5ad` feature, so the function does not link libhdf5).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cellucid_edge::lambda::{self, LambdaHandler, Logging};
use cellucid_edge::service::Config;

fn main() -> ExitCode {
    cellucid_edge::memory::start_releasing_freed_memory();
    let started = Instant::now();
    // An unusable configuration (a bad number, a share secret too short to protect anything)
    // stops the function at init: it never serves with settings it cannot honour.
    let (config, logging) = match (Config::from_env(), Logging::from_env()) {
        (Ok(config), Ok(logging)) => (config, logging),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    lambda::init_logging(&logging);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let handler = Arc::new(LambdaHandler::new(config));
        if handler.config().open_at_init {
            // A failure is logged, never fatal: a transient one is retried on the first request
            // (which answers 503 if the store is still unavailable), so the container never
            // crash-loops on a store hiccup; a permanent one is answered 500 with its reason.
            if let Err(e) = handler.service().await {
                tracing::error!(target: "cellucid_edge::lambda", "cannot open the atlas at init: {e}");
            }
        }
        tracing::info!(
            target: "cellucid_edge::lambda",
            init_ms = started.elapsed().as_secs_f64() * 1000.0,
            open_at_init = handler.config().open_at_init,
            "init done"
        );
        lambda::run(handler).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "cellucid_edge::lambda", "runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
