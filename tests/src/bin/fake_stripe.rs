//! Runs the fake Stripe standalone, for pointing a local `payout-execute` at it:
//!
//! ```sh
//! cargo run -p integration-tests --bin fake-stripe -- --port 12111
//! STRIPE_API_BASE=http://127.0.0.1:12111 STRIPE_SECRET_KEY=sk_test_fake_stripe …
//! ```
//!
//! Every transfer it makes is printed when it stops (Ctrl-C).

use integration_tests::fakes::stripe::{FAKE_SECRET_KEY, FakeStripe};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 12111;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--port takes a port number");
            }
            other => panic!("unknown argument {other:?}; usage: fake-stripe [--port PORT]"),
        }
    }
    let fake = FakeStripe::start_on(port).await?;
    println!("fake Stripe listening on {}", fake.base_url());
    println!(
        "  STRIPE_API_BASE={} STRIPE_SECRET_KEY={FAKE_SECRET_KEY}",
        fake.base_url()
    );
    tokio::signal::ctrl_c().await?;
    for transfer in fake.transfers() {
        println!(
            "{} {} {} -> {} (key {})",
            transfer.id,
            transfer.amount,
            transfer.currency,
            transfer.destination,
            transfer.idempotency_key.unwrap_or_default()
        );
    }
    Ok(())
}
