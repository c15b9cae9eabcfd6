//! Runs the fake Adyen standalone, for pointing a local `payout-execute` at it:
//!
//! ```sh
//! cargo run -p integration-tests --bin fake-adyen -- --port 12112
//! ADYEN_API_BASE=http://127.0.0.1:12112 ADYEN_API_KEY=AQE_fake_adyen_api_key \
//!   ADYEN_BALANCE_ACCOUNT_ID=BA_PLATFORM_FAKE …
//! ```
//!
//! Every transfer it makes is printed when it stops (Ctrl-C).

use integration_tests::fakes::adyen::{
    FAKE_API_KEY, FAKE_BALANCE_ACCOUNT, FAKE_HMAC_KEY, FakeAdyen,
};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut port = 12112;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--port takes a port number");
            }
            other => panic!("unknown argument {other:?}; usage: fake-adyen [--port PORT]"),
        }
    }
    let fake = FakeAdyen::start_on(port).await?;
    println!("fake Adyen listening on {}", fake.base_url());
    println!(
        "  ADYEN_API_BASE={} ADYEN_API_KEY={FAKE_API_KEY} ADYEN_BALANCE_ACCOUNT_ID={FAKE_BALANCE_ACCOUNT} ADYEN_HMAC_KEY={FAKE_HMAC_KEY}",
        fake.base_url()
    );
    tokio::signal::ctrl_c().await?;
    for transfer in fake.transfers() {
        println!(
            "{} {} {} {} -> {} {} (key {})",
            transfer.id,
            transfer.amount,
            transfer.currency,
            transfer.balance_account,
            transfer.counterparty,
            transfer.status,
            transfer.idempotency_key.unwrap_or_default()
        );
    }
    Ok(())
}
