//! Stripe's minor units, which are not ISO 4217's. From Stripe's currency documentation
//! (<https://docs.stripe.com/currencies>, "Zero-decimal currencies", "Three-decimal currencies"
//! and "Special cases"), documented for charges and payouts; for transfers Stripe says nothing
//! either way, so this takes the safe reading and refuses, rather than rounds, whatever the
//! stricter rule would refuse:
//! - zero-decimal: BIF, CLP, DJF, GNF, JPY, KMF, KRW, MGA, PYG, RWF, VND, VUV, XAF, XOF, XPF
//!   (MGA is two-decimal in ISO: 1,500 MGA is `1500`, not `150000`); Stripe also lists UGX as
//!   zero-decimal, but takes it as below;
//! - ISK and UGX: sent as a two-decimal amount whose decimals are `00` (5 ISK → `500`): whole
//!   units only;
//! - HUF and TWD: zero-decimal for payouts: whole units only, sent as two-decimal (× 100);
//! - three-decimal (BHD, JOD, KWD, OMR, TND, and any other ISO three-decimal code): the last
//!   digit must be 0;
//! - ISO four-decimal units of account (CLF, UYW): not documented by Stripe, refused;
//! - everything else: ISO 4217.

use payouts_core::money::{MoneyError, PayoutAmount, iso_minor_units};

const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF",
    "XOF", "XPF",
];
/// Whole units only, sent with two decimals that are always `00`.
const WHOLE_UNITS_AS_TWO_DECIMAL: &[&str] = &["ISK", "UGX", "HUF", "TWD"];

/// `amount` as Stripe reads it for transfers, exactly, or why Stripe cannot be sent it.
pub fn minor_units(amount: &PayoutAmount) -> Result<i64, MoneyError> {
    let code = amount.currency.code();
    let too_large = || MoneyError::TooLarge {
        amount: amount.amount,
        currency: amount.currency,
    };
    if ZERO_DECIMAL.contains(&code) {
        return amount.scaled(0, || format!("Stripe takes {code} in whole units"));
    }
    if WHOLE_UNITS_AS_TWO_DECIMAL.contains(&code) {
        let whole = amount.scaled(0, || {
            format!("Stripe takes whole {code} only (sent with two decimals that are 00)")
        })?;
        return whole.checked_mul(100).ok_or_else(too_large);
    }
    match amount.currency.iso_exponent() {
        3 => {
            let hundredths = amount.scaled(2, || {
                format!("Stripe takes {code} in three decimals whose last digit is 0")
            })?;
            hundredths.checked_mul(10).ok_or_else(too_large)
        }
        exponent if exponent > 3 => Err(MoneyError::NotPayable {
            amount: amount.amount,
            currency: amount.currency,
            rule: format!("Stripe does not document {code} ({exponent} decimal places)"),
        }),
        _ => iso_minor_units(amount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payouts_core::money::Currency;

    fn stripe(raw: &str, code: &str) -> Result<i64, MoneyError> {
        minor_units(&PayoutAmount::parse(raw, Currency::parse(code).unwrap()).unwrap())
    }

    fn refused(raw: &str, code: &str) -> bool {
        matches!(stripe(raw, code), Err(MoneyError::NotPayable { .. }))
    }

    #[test]
    fn zero_decimal_currencies_are_whole_units() {
        for code in ZERO_DECIMAL {
            assert_eq!(stripe("1500", code), Ok(1500), "{code}");
            assert!(refused("1500.5", code), "{code}");
        }
        assert_eq!(stripe("1500", "MGA"), Ok(1500), "not ISO's 150000");
    }

    #[test]
    fn isk_ugx_huf_twd_are_whole_units_sent_with_two_zero_decimals() {
        for code in WHOLE_UNITS_AS_TWO_DECIMAL {
            assert_eq!(stripe("5", code), Ok(500), "{code}");
            assert_eq!(stripe("1500.00", code), Ok(150_000), "{code}");
            assert!(refused("1500.5", code), "{code}");
            assert!(refused("0.01", code), "{code}");
        }
    }

    #[test]
    fn three_decimal_currencies_end_in_zero() {
        for code in ["BHD", "JOD", "KWD", "OMR", "TND"] {
            assert_eq!(stripe("1.23", code), Ok(1230), "{code}");
            assert_eq!(stripe("1.230", code), Ok(1230), "{code}");
            assert_eq!(stripe("7", code), Ok(7000), "{code}");
            assert!(refused("1.234", code), "{code}");
        }
    }

    #[test]
    fn other_currencies_follow_iso_and_units_of_account_are_refused() {
        assert_eq!(stripe("12.34", "USD"), Ok(1234));
        assert_eq!(stripe("12.34", "EUR"), Ok(1234));
        assert!(refused("12.345", "USD"));
        assert!(refused("1", "CLF"));
        assert!(matches!(
            stripe("999999999999999999", "ISK"),
            Err(MoneyError::TooLarge { .. })
        ));
    }
}
