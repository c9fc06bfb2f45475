//! Client frames as `timd` parses them (`gateway.rs`): JSON text into `ClientFrame`, then
//! the login checks (UserSig decode and verify, limiter) for `login` / `renew`, and the
//! ticket check for `resume`. A parsed frame must also survive a round trip.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use tim_proto::{ClientFrame, Login, Platform};
use timd::login::LoginChecker;
use timd::ticket::Tickets;

const APP: u32 = 1_400_000_000;
const KEY: &str = "fuzz-app-key";
const NOW: u64 = 1_700_000_000;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fuzz_target!(|data: &[u8]| {
    // The server reads text messages, which the WebSocket layer has checked are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    let again = serde_json::to_string(&frame).expect("a parsed frame serializes");
    assert_eq!(
        serde_json::from_str::<ClientFrame>(&again).expect("and parses back"),
        frame
    );
    let checker = LoginChecker::new(APP, KEY);
    match frame {
        ClientFrame::Login(login) => {
            let _ = checker.check(&login, NOW, CLIENT);
        }
        ClientFrame::Renew { seq, usersig } => {
            let login = Login {
                seq,
                sdkappid: APP,
                user: "alice".into(),
                usersig,
                platform: Platform::Web,
                instance: "tab".into(),
            };
            let _ = checker.check(&login, NOW, CLIENT);
        }
        ClientFrame::Resume { ticket, .. } => {
            let _ = Tickets::new(KEY).verify(&ticket, NOW);
        }
        ClientFrame::Logout { .. } | ClientFrame::Ping | ClientFrame::Pong => {}
    }
});
