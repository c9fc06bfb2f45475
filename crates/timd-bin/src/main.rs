//! `timd serve` / `timd usersig` / `timd client`. Exit codes: 0 ok, 1 runtime failure,
//! 2 bad usage/config (`timd client` adds 3: kicked out).

mod allocator;
mod cli;
mod demo_devices;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use cli::{Cli, Command};
use timd::cli::{ServeArgs, UsersigArgs};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Client(args) => tim_client::cli::main(args),
        Command::Usersig(args) => usersig(args),
        Command::Serve(args) => serve(*args),
    }
}

fn usersig(args: UsersigArgs) -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match args.generate(now) {
        Ok(sig) => {
            println!("{sig}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("timd usersig: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if timd::cli::key_on_command_line(std::env::args()) {
        eprintln!(
            "timd serve: warning: --key on the command line is visible to every user \
             of this machine (ps); use TIMD_KEY or --key-file PATH"
        );
    }
    if timd::cli::redis_password_on_command_line(std::env::args()) {
        eprintln!(
            "timd serve: warning: --redis with a password on the command line is visible to \
             every user of this machine (ps); put the URL in TIMD_REDIS (the environment, or a \
             systemd EnvironmentFile / credential) instead"
        );
    }
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("timd serve: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    allocator::keep_freed_memory();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("timd serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `--demo`'s native devices are tim-client sessions.
    let options = timd::ServeOptions {
        demo_devices: Some(Arc::new(demo_devices::ClientDevices)),
    };
    match runtime.block_on(timd::serve_with(config, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timd serve: {e}");
            match e {
                timd::ServeError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
