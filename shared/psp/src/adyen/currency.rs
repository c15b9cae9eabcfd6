//! Adyen's minor units, which are not always ISO 4217's. From Adyen's currency table
//! (<https://docs.adyen.com/development-resources/currency-codes>, the page the Transfers API's
//! `Amount.value` points to): "For CLP, CVE, IDR, and ISK the standard has a different number of
//! decimals than shown in our currency codes table … the decimals in the table on this page are
//! leading." Every other currency Adyen lists has ISO's decimals, and a currency Adyen does not
//! list is refused by Adyen itself (a 422, nothing paid). So:
//! - CLP: two decimals at Adyen (ISO: none). Whole pesos only, sent × 100 (1,500 CLP → `150000`);
//! - ISK: two decimals at Adyen (ISO: none). Whole krónur only, sent × 100 (5 ISK → `500`).
//!   Adyen's web SDK formats ISK with no decimals, which contradicts the API table; the API
//!   table is the one the Transfers API cites for `Amount.value`, so it is followed here, and
//!   only whole krónur are sent, the value that both readings spell with trailing `00`;
//! - CVE and IDR: no decimals at Adyen (ISO: two). Whole units only (1,500 IDR → `1500`, not
//!   `150000`); a fractional amount is refused, never rounded;
//! - ISO four-decimal units of account (CLF, UYW): not in Adyen's table, refused;
//! - everything else: ISO 4217 (zero-decimal JPY, KRW…; three-decimal BHD, KWD…; two otherwise).

use payouts_core::money::{MoneyError, PayoutAmount, iso_minor_units};

/// Two decimals at Adyen where ISO 4217 has none: whole units only, sent × 100.
const WHOLE_UNITS_AS_TWO_DECIMAL: &[&str] = &["CLP", "ISK"];
/// No decimals at Adyen where ISO 4217 has two: whole units only, sent as is.
const ZERO_DECIMAL_UNLIKE_ISO: &[&str] = &["CVE", "IDR"];

/// `amount` as Adyen reads `Amount.value` for transfers, exactly, or why Adyen cannot be sent
/// it.
pub fn minor_units(amount: &PayoutAmount) -> Result<i64, MoneyError> {
    let code = amount.currency.code();
    if ZERO_DECIMAL_UNLIKE_ISO.contains(&code) {
        return amount.scaled(0, || {
            format!("Adyen takes {code} without decimals (ISO 4217 gives it two): whole units only")
        });
    }
    if WHOLE_UNITS_AS_TWO_DECIMAL.contains(&code) {
        let whole = amount.scaled(0, || {
            format!(
                "Adyen takes {code} with two decimals where ISO 4217 has none: whole units only (sent with two decimals that are 00)"
            )
        })?;
        return whole.checked_mul(100).ok_or(MoneyError::TooLarge {
            amount: amount.amount,
            currency: amount.currency,
        });
    }
    match amount.currency.iso_exponent() {
        exponent if exponent > 3 => Err(MoneyError::NotPayable {
            amount: amount.amount,
            currency: amount.currency,
            rule: format!("{code} ({exponent} decimal places) is not in Adyen's currency table"),
        }),
        _ => iso_minor_units(amount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payouts_core::money::Currency;

    fn adyen(raw: &str, code: &str) -> Result<i64, MoneyError> {
        minor_units(&PayoutAmount::parse(raw, Currency::parse(code).unwrap()).unwrap())
    }

    fn refused(raw: &str, code: &str) -> bool {
        matches!(adyen(raw, code), Err(MoneyError::NotPayable { .. }))
    }

    #[test]
    fn clp_and_isk_are_whole_units_sent_with_two_zero_decimals() {
        for code in WHOLE_UNITS_AS_TWO_DECIMAL {
            assert_eq!(adyen("1500", code), Ok(150_000), "{code}: not ISO's 1500");
            assert_eq!(adyen("5", code), Ok(500), "{code}");
            assert_eq!(adyen("5.00", code), Ok(500), "{code}");
            assert!(refused("5.5", code), "{code}: no rounding");
            assert!(refused("0.01", code), "{code}");
            assert!(matches!(
                adyen("999999999999999999", code),
                Err(MoneyError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn cve_and_idr_are_whole_units_without_decimals() {
        for code in ZERO_DECIMAL_UNLIKE_ISO {
            assert_eq!(adyen("1500", code), Ok(1500), "{code}: not ISO's 150000");
            assert_eq!(adyen("1500.00", code), Ok(1500), "{code}");
            assert!(refused("1500.5", code), "{code}: no rounding");
            assert!(refused("0.01", code), "{code}");
        }
    }

    #[test]
    fn other_currencies_follow_iso() {
        assert_eq!(adyen("12.34", "EUR"), Ok(1234));
        assert_eq!(adyen("12.34", "USD"), Ok(1234));
        assert!(refused("12.345", "EUR"));
        for code in ["JPY", "KRW", "VND", "XOF"] {
            assert_eq!(adyen("1500", code), Ok(1500), "{code}");
            assert!(refused("1500.5", code), "{code}");
        }
        for code in ["BHD", "KWD", "JOD", "OMR", "TND", "IQD", "LYD"] {
            assert_eq!(adyen("1.234", code), Ok(1234), "{code}");
            assert_eq!(adyen("7", code), Ok(7000), "{code}");
            assert!(refused("1.2345", code), "{code}");
        }
    }

    #[test]
    fn four_decimal_units_of_account_are_refused() {
        assert!(refused("1", "CLF"));
        assert!(refused("1", "UYW"));
    }
}
