//! Money: amounts are `Decimal` in major units (as upstream writes `netAmount`), and PSPs take
//! integer minor units. Conversion uses the currency's ISO 4217 exponent and is exact or an error:
//! an amount that would need rounding is never paid.

use rust_decimal::Decimal;
use std::str::FromStr;

/// Why an amount cannot be paid as it stands. Every variant names the offending value, so the
/// log line says what upstream must correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error("amount {0} is not positive: a payout must move money to the recipient")]
    NotPositive(Decimal),
    #[error(
        "amount {amount} has more decimal places than {currency} allows ({exponent}); refusing to round money"
    )]
    TooPrecise {
        amount: Decimal,
        currency: String,
        exponent: u32,
    },
    #[error("amount {amount} {currency} does not fit in the PSP's integer minor units")]
    TooLarge { amount: Decimal, currency: String },
    #[error("currency {0:?} is not an ISO 4217 code (three upper-case letters)")]
    UnknownCurrency(String),
}

/// ISO 4217 minor-unit exponent of `currency`. Codes outside the zero-, three- and four-decimal
/// lists below use two decimals, as ISO 4217 assigns to every other circulating currency.
pub fn currency_exponent(currency: &str) -> Result<u32, MoneyError> {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: &[&str] = &["CLF", "UYW"];
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(MoneyError::UnknownCurrency(currency.to_owned()));
    }
    Ok(if ZERO.contains(&currency) {
        0
    } else if THREE.contains(&currency) {
        3
    } else if FOUR.contains(&currency) {
        4
    } else {
        2
    })
}

/// Converts `amount` (major units) to `currency`'s minor units, exactly.
pub fn to_minor_units(amount: Decimal, currency: &str) -> Result<i64, MoneyError> {
    let exponent = currency_exponent(currency)?;
    let normalized = amount.normalize();
    if normalized.scale() > exponent {
        return Err(MoneyError::TooPrecise {
            amount,
            currency: currency.to_owned(),
            exponent,
        });
    }
    let too_large = || MoneyError::TooLarge {
        amount,
        currency: currency.to_owned(),
    };
    let mut scaled = normalized;
    scaled.rescale(exponent);
    if scaled.scale() != exponent {
        return Err(too_large());
    }
    i64::try_from(scaled.mantissa()).map_err(|_| too_large())
}

/// A payable amount: positive, in the batch's currency, exactly representable in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutAmount {
    pub amount: Decimal,
    pub minor_units: i64,
    pub currency: String,
}

impl PayoutAmount {
    /// Validates a stored `netAmount` for `currency`. This is the one gate every amount passes
    /// before a PSP sees it.
    pub fn parse(raw: &str, currency: &str) -> Result<Self, MoneyError> {
        let raw = raw.trim();
        let amount = Decimal::from_str_exact(raw)
            .or_else(|_| Decimal::from_scientific(raw))
            .or_else(|_| Decimal::from_str(raw))
            .map_err(|_| MoneyError::NotANumber(raw.to_owned()))?;
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(amount));
        }
        let minor_units = to_minor_units(amount, currency)?;
        Ok(PayoutAmount {
            amount,
            minor_units,
            currency: currency.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minor(raw: &str, currency: &str) -> Result<i64, MoneyError> {
        PayoutAmount::parse(raw, currency).map(|a| a.minor_units)
    }

    #[test]
    fn converts_by_currency_exponent() {
        assert_eq!(minor("12.34", "USD"), Ok(1234));
        assert_eq!(minor("12.340", "USD"), Ok(1234));
        assert_eq!(minor("7", "USD"), Ok(700));
        assert_eq!(minor("1500", "JPY"), Ok(1500));
        assert_eq!(minor("1.234", "BHD"), Ok(1234));
        assert_eq!(minor("1E+2", "EUR"), Ok(10000));
    }

    #[test]
    fn refuses_what_would_need_rounding_or_is_not_money() {
        assert!(matches!(
            minor("12.345", "USD"),
            Err(MoneyError::TooPrecise { exponent: 2, .. })
        ));
        assert!(matches!(
            minor("10.5", "JPY"),
            Err(MoneyError::TooPrecise { exponent: 0, .. })
        ));
        assert!(matches!(minor("0", "USD"), Err(MoneyError::NotPositive(_))));
        assert!(matches!(
            minor("-5.00", "USD"),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            minor("abc", "USD"),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            minor("1.00", "usd"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            minor("99999999999999999999", "USD"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            minor("0.00000000000000000000000001", "USD"),
            Err(MoneyError::TooPrecise { .. })
        ));
    }
}
