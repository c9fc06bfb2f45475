//! The top-level `timd` command line. The server library owns the `serve` and `usersig`
//! arguments, tim-client the `client` ones; this crate only puts them side by side, so the
//! server library does not depend on the client.

use clap::{Parser, Subcommand};
use timd::cli::{ServeArgs, UsersigArgs};

#[derive(Debug, Parser)]
#[command(name = "timd", version, about = "The tim-wasm login server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: WebSocket gateway at /ws (+ demo page and SDK package with --demo).
    Serve(Box<ServeArgs>),
    /// Print a UserSig for USER, generated now.
    Usersig(UsersigArgs),
    /// Log in as a native client (any platform) and print each event it receives, until
    /// Ctrl-C (then log out) or a kick.
    Client(tim_client::cli::ClientArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        let argv = std::iter::once("timd").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.command)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_subcommand_reaches_its_arguments() {
        let Command::Serve(s) = parse(&["serve", "--sdkappid", "1", "--key", "k"]).unwrap() else {
            panic!("expected serve")
        };
        assert_eq!(s.into_config().unwrap().sdkappid, 1);
        let Command::Usersig(u) =
            parse(&["usersig", "--sdkappid", "7", "--key", "k", "--user", "al"]).unwrap()
        else {
            panic!("expected usersig")
        };
        let sig = u.generate(1_700_000_000).unwrap();
        assert!(tim_usersig::verify(&sig, "k", 7, "al", 1_700_000_001).is_ok());
        let Command::Client(c) = parse(&[
            "client",
            "--sdkappid",
            "7",
            "--user",
            "al",
            "--usersig",
            "s",
            "--platform",
            "iPad",
        ])
        .unwrap() else {
            panic!("expected client")
        };
        assert_eq!((c.sdkappid, c.user.as_str()), (7, "al"));
        assert_eq!(c.platform.as_str(), "iPad");
        let err = parse(&["bogus"]).unwrap_err();
        assert!(err.contains("unrecognized subcommand"), "{err}");
    }

    #[test]
    fn the_client_signs_with_a_key_file_as_serve_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "k\n").unwrap();
        let file = path.to_str().unwrap();
        let client = |extra: &[&str]| {
            let mut args = vec!["client", "--sdkappid", "7", "--user", "al"];
            args.extend_from_slice(extra);
            parse(&args)
        };
        let Command::Client(c) = client(&["--key-file", file]).unwrap() else {
            panic!("expected client")
        };
        let sig = c.usersig(1_700_000_000).unwrap();
        assert!(tim_usersig::verify(&sig, "k", 7, "al", 1_700_000_001).is_ok());
        // One source of the UserSig only.
        assert!(client(&["--key-file", file, "--key", "k"]).is_err());
        assert!(client(&["--key-file", file, "--usersig", "s"]).is_err());
        assert!(client(&[]).is_err());
        // A file of two lines is refused, naming the file.
        std::fs::write(&path, "k\nmore\n").unwrap();
        let Command::Client(c) = client(&["--key-file", file]).unwrap() else {
            panic!("expected client")
        };
        let err = c.usersig(1_700_000_000).unwrap_err();
        assert!(
            err.contains("more than one line") && err.contains(file),
            "{err}"
        );
    }
}
