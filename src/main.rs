//! `readhub`: parse the command line, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use readhub::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("READHUB_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,dicom_ul=warn,tower_http=info".into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
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
