//! `cellucid-edge share`: print a viewer link whose remote base carries a signed share token.

use std::time::{Duration, SystemTime};

use clap::Args;

use cellucid_edge::share::{self, ShareSecret};

/// Arguments of `share`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// Name of the environment variable holding the secret (the same one `serve
    /// --share-secret-env` or the Lambda's `CELLUCID_SHARE_SECRET` uses).
    #[arg(long, value_name = "VAR")]
    pub secret_env: String,
    /// How long the link works: `7d`, `12h`, `30min`, `2w`, ...
    #[arg(long, default_value = "7d", value_parser = share::parse_validity)]
    pub expires: Duration,
    /// Bind the link to one dataset id (required to open one atlas of a catalogue).
    #[arg(long, value_name = "ID")]
    pub dataset: Option<String>,
    /// Public base URL of the server (https for collaborators).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8765")]
    pub base: String,
}

/// Print the link (stdout) and what it grants (stderr).
pub fn run(args: ShareArgs) -> anyhow::Result<()> {
    let secret = ShareSecret::from_env(&args.secret_env)?;
    let now = SystemTime::now();
    let token = share::issue_for(&secret, now, args.expires, args.dataset.as_deref());
    let expires = now + args.expires;
    let when = time::OffsetDateTime::from(expires)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{} s from now", args.expires.as_secs()));
    eprintln!(
        "share link valid until {when}{}; anyone with the link can read the atlas",
        args.dataset
            .as_deref()
            .map(|d| format!(" for dataset `{d}`"))
            .unwrap_or_default()
    );
    println!(
        "{}",
        share::viewer_url(&args.base, &token, args.dataset.as_deref())
    );
    Ok(())
}
