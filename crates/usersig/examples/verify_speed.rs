//! Time per UserSig check on this machine: `cargo run --release -p tim-usersig --example
//! verify_speed`. Prints µs per call of [`tim_usersig::verify`] (keyed anew each call) and
//! of [`tim_usersig::Verifier::verify`] (the key prepared once, as `timd` does per app).

use std::time::Instant;

fn main() {
    const APP: u32 = 1_400_000_000;
    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    let n = 200_000;
    let sigs: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let user = format!("user{i}");
            let sig = tim_usersig::generate(APP, KEY, &user, 1_700_000_000, 86_400);
            (user, sig)
        })
        .collect();
    let verifier = tim_usersig::Verifier::new(KEY);
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            let (user, sig) = &sigs[i % sigs.len()];
            tim_usersig::verify(sig, KEY, APP, user, 1_700_000_001).expect("valid");
        }
        let plain = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for i in 0..n {
            let (user, sig) = &sigs[i % sigs.len()];
            verifier
                .verify(sig, APP, user, 1_700_000_001)
                .expect("valid");
        }
        let prepared = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: verify {plain:.2} µs, Verifier::verify {prepared:.2} µs per UserSig"
        );
    }
}
