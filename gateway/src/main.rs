//! The `gateway` binary: parses the command line and runs a subcommand.

use std::process::ExitCode;

use clap::Parser as _;
use gateway::cli::{Cli, Command};
use gateway::telemetry;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain: "cannot open ...: SQLite: ...: disk full".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            let cfg = args.load()?;
            // Checked before logging starts so that a bad value is one clear line.
            cfg.resolve()?;
            telemetry::init_logging(cfg.log.format, &cfg.log.filter);
            // Commits run on threads of their own (log writer, applier) and API
            // queries on the query API's threads; the blocking pool serves start-up,
            // /health's outbox read and the joins at shutdown: two threads are plenty.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(2)
                .build()?;
            rt.block_on(gateway::service::run(cfg, CancellationToken::new()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let cfg = args.load()?;
            cfg.resolve()?;
            telemetry::init_logging(cfg.log.format, &cfg.log.filter);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(gateway::serve::run(cfg, CancellationToken::new()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let cfg = args.load()?;
            let resolved = cfg.resolve()?;
            println!("configuration OK\n\n{cfg:#?}\n\n{resolved:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Deadletters(args) => gateway::deadletters::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Devices(args) => match &args.action {
            gateway::cli::DevicesAction::Provision(p) => {
                gateway::provision::run(p).map(|()| ExitCode::SUCCESS)
            }
        },
        Command::Query(args) => gateway::query_cli::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Alerts(args) => match &args.action {
            gateway::cli::AlertsAction::ExportVmalert(e) => {
                gateway::alerts::vmalert::run(e).map(|()| ExitCode::SUCCESS)
            }
        },
        Command::Bench(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(gateway::bench::publish(&args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
