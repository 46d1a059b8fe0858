//! `readhub`: parse the command line, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use readhub::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("READHUB_LOG")
            .unwrap_or_else(|_| "info,sqlx=warn,dicom_ul=warn,tower_http=info".into())
    };
    match std::env::var("READHUB_LOG_FORMAT").as_deref() {
        // one JSON object per line for a log collector; every line carries the fields of
        // its spans: the association's dimse.id, the request's http.request_id
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => anyhow::bail!("READHUB_LOG_FORMAT={other:?}: use json or text"),
    }
    let config = cli.config()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match &cli.command {
            Command::Serve(_) => {
                let listeners = readhub::Listeners::bind(&config).await?;
                readhub::run(config, listeners, shutdown_signal()).await
            }
            other => readhub::cli::admin_command(&config, other).await,
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
