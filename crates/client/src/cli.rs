//! `timd client`: log in as any platform and print every event, one line each, until
//! Ctrl-C (then log out) or a kick.
//!
//! ```text
//! timd client --url ws://127.0.0.1:9000 --sdkappid 1400000000 --platform Android \
//!     --user alice --usersig "$SIG"          # or --key-file PATH to sign it here
//! client Android alice instance 5f0c… -> ws://127.0.0.1:9000
//! event netStateChange connecting
//! event netStateChange connected
//! event sdkStateReady
//! login ok
//! event kickedOut multipleDevice
//! ```
//!
//! Exit codes: 0 logged out after Ctrl-C, 1 login failed or the session ended otherwise,
//! 2 bad usage, 3 kicked out.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use tim_proto::Platform;
use tim_session::{Config, Event};

use std::sync::Arc;

use crate::{describe, random_instance_id, Client, Endpoint, Options, RenewFn};

/// Exit code when the session was kicked out.
pub const EXIT_KICKED: u8 = 3;

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// timd's base URL; the socket goes to <URL>/ws.
    #[arg(long, env = "TIMD_URL", default_value = "ws://127.0.0.1:9000")]
    pub url: String,
    /// The app's SDKAppID.
    #[arg(long, env = "TIMD_SDKAPPID")]
    pub sdkappid: u32,
    /// Platform to log in as: Web, Android, iPhone, iPad, Windows or Mac.
    #[arg(long, default_value = "Web", value_parser = parse_platform)]
    pub platform: Platform,
    /// The UserID to log in as.
    #[arg(long)]
    pub user: String,
    /// The UserSig to log in with.
    #[arg(
        long,
        env = "TIMD_USERSIG",
        hide_env_values = true,
        conflicts_with_all = ["key", "key_file"],
        required_unless_present_any = ["key", "key_file"]
    )]
    pub usersig: Option<String>,
    /// Instead of --usersig: the app's secret key, to sign a UserSig here. Prefer TIMD_KEY or
    /// --key-file: a key on the command line is visible to every user of the machine (ps).
    #[arg(
        long,
        env = "TIMD_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    pub key: Option<String>,
    /// Instead of --usersig: a file holding the app's secret key (one line; a trailing newline
    /// is ignored), as `timd serve --key-file`.
    #[arg(long, env = "TIMD_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
    /// Validity of a UserSig signed with --key, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub expire: u64,
    /// This instance's id (default: a random one).
    #[arg(long)]
    pub instance: Option<String>,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).ok_or_else(|| {
        format!("unknown platform {s:?}: Web, Android, iPhone, iPad, Windows or Mac")
    })
}

impl ClientArgs {
    /// The key given with `--key` or read from `--key-file`, if any.
    pub fn key(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.key_file else {
            return Ok(self.key.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--key-file {}: {e}", path.display()))?;
        let key = text.strip_suffix('\n').unwrap_or(&text);
        let key = key.strip_suffix('\r').unwrap_or(key);
        if key.contains('\n') {
            return Err(format!(
                "--key-file {}: it holds more than one line",
                path.display()
            ));
        }
        Ok(Some(key.to_owned()))
    }

    /// The UserSig to use: given, or signed with the key at `now` (unix seconds).
    pub fn usersig(&self, now: u64) -> Result<String, String> {
        match (&self.usersig, self.key()?) {
            (Some(sig), _) => Ok(sig.clone()),
            (None, Some(key)) if !key.is_empty() => Ok(tim_usersig::generate(
                self.sdkappid,
                &key,
                &self.user,
                now,
                self.expire,
            )),
            _ => Err("--usersig, a non-empty --key or --key-file is required".into()),
        }
    }
}

/// Runs the CLI on a fresh runtime; Ctrl-C logs out and exits.
pub fn main(args: ClientArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("timd client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let stop = ctrl_c();
        run(args, stop, &mut std::io::stdout()).await
    });
    ExitCode::from(code)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Ctrl-C, with its handler installed now. `tokio::signal::ctrl_c()` installs it only when
/// first polled, after the login: a Ctrl-C in between would kill the process without a logout.
/// Must run inside the runtime.
fn ctrl_c() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        if let Some(signal) = interrupt.as_mut() {
            if signal.recv().await.is_some() {
                return;
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Logs in, prints each event until `stop` completes (then logs out) or the session ends.
/// Returns the exit code.
pub async fn run(args: ClientArgs, stop: impl Future<Output = ()>, out: &mut dyn Write) -> u8 {
    let usersig = match args.usersig(unix_now()) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "error {e}");
            return 2;
        }
    };
    if let Err(e) = Endpoint::parse(&args.url) {
        let _ = writeln!(out, "error {e}");
        return 2;
    }
    let instance = args.instance.clone().unwrap_or_else(random_instance_id);
    let config = Config::new(args.sdkappid, args.platform, instance.clone());
    // With the key at hand, renew the UserSig ahead of expiry instead of being kicked.
    let key = args.key().ok().flatten();
    let renew: Option<RenewFn> = key.filter(|k| !k.is_empty()).map(|key| {
        let (sdkappid, user, expire) = (args.sdkappid, args.user.clone(), args.expire);
        let f: RenewFn = Arc::new(move || {
            let sig = tim_usersig::generate(sdkappid, &key, &user, unix_now(), expire);
            Box::pin(std::future::ready(Some(sig)))
        });
        f
    });
    let options = Options {
        renew,
        ..Options::default()
    };
    let mut client = Client::with_options(&args.url, config, options);
    let _ = writeln!(
        out,
        "client {} {} instance {instance} -> {}",
        args.platform.as_str(),
        args.user,
        args.url
    );
    tokio::pin!(stop);
    // Events that arrive while the login is under way are printed as they come.
    let login = client.handle().clone();
    let login = login.login(&args.user, &usersig);
    tokio::pin!(login);
    loop {
        tokio::select! {
            // Queued events first, so lines keep the order the session produced them in.
            biased;
            Some(event) = client.next_event() => {
                let _ = writeln!(out, "{}", describe(&event));
            }
            result = &mut login => {
                match result {
                    Ok(ok) => {
                        let repeat = matches!(ok, tim_session::OpOk::Login { repeat: true });
                        let _ = writeln!(out, "login ok{}", if repeat { " (repeat)" } else { "" });
                        break;
                    }
                    Err(e) => {
                        while let Some(event) = client.try_next_event() {
                            let _ = writeln!(out, "{}", describe(&event));
                        }
                        let _ = writeln!(out, "login failed {} {}", e.code, e.message);
                        return 1;
                    }
                }
            }
        }
        let _ = out.flush();
    }
    let _ = out.flush();
    let code = loop {
        tokio::select! {
            () = &mut stop => {
                let code = match client.logout().await {
                    Ok(_) => { let _ = writeln!(out, "logout ok"); 0 }
                    Err(e) => { let _ = writeln!(out, "logout failed {} {}", e.code, e.message); 1 }
                };
                while let Some(event) = client.try_next_event() {
                    let _ = writeln!(out, "{}", describe(&event));
                }
                break code;
            }
            event = client.next_event() => {
                let Some(event) = event else { break 1 };
                let _ = writeln!(out, "{}", describe(&event));
                match event {
                    Event::Kicked(_) => break EXIT_KICKED,
                    Event::NotReady => break 1,
                    _ => {}
                }
            }
        }
        let _ = out.flush();
    };
    let _ = out.flush();
    let _ = client.destroy().await;
    code
}
