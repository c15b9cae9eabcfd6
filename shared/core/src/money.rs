//! Money: amounts are exact `Decimal`s in major units (as upstream writes `netAmount`), in an
//! ISO 4217 [`Currency`]. Turning an amount into the integer minor units a PSP takes belongs to
//! the PSP's adapter, since PSPs' tables differ from ISO's (`PaymentAdapter::minor_units`);
//! [`iso_minor_units`] is the ISO reading an adapter uses when its PSP follows ISO. Every
//! conversion is exact or an error: an amount that would need rounding is never paid.

use rust_decimal::Decimal;
use std::fmt;

/// Why an amount cannot be paid as it stands. Every variant names the offending value, so the
/// reason on the item says what upstream must correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error(
        "amount {0:?} has more significant digits than can be held exactly (28); refusing to round money"
    )]
    TooManyDigits(String),
    #[error("amount {0} is not positive: a payout must move money to the recipient")]
    NotPositive(Decimal),
    #[error("amount {amount} not payable in {currency}: {rule}; refusing to round money")]
    NotPayable {
        amount: Decimal,
        currency: Currency,
        /// The PSP's (or ISO's) rule the amount breaks.
        rule: String,
    },
    #[error("amount {amount} {currency} does not fit in the PSP's integer minor units")]
    TooLarge { amount: Decimal, currency: Currency },
    #[error(
        "currency {0:?} is not an ISO 4217 currency this service can pay in (a known code such as USD or usd; not XTS, XXX or metals)"
    )]
    UnknownCurrency(String),
}

/// ISO 4217 codes with minor units, as published by the ISO 4217 maintenance agency (list
/// one, as of 2026-01-01, read from the `iso4217` data package). Codes without minor units
/// (`XXX` no currency, `XTS` testing, metals, SDR…) are absent: they cannot be paid.
const ISO_4217: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAD", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// A currency this service can pay in: an ISO 4217 code with minor units, normalised to upper
/// case (upstream and Stripe may write `usd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    iso_exponent: u32,
}

impl Currency {
    /// The currency `raw` names, in any case; unknown codes and non-currencies are refused.
    pub fn parse(raw: &str) -> Result<Currency, MoneyError> {
        let upper = raw.trim().to_ascii_uppercase();
        ISO_4217
            .iter()
            .find(|(code, _)| *code == upper)
            .map(|&(code, iso_exponent)| Currency { code, iso_exponent })
            .ok_or_else(|| MoneyError::UnknownCurrency(raw.to_owned()))
    }

    /// The upper-case ISO code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// ISO 4217's minor-unit exponent (PSPs may read the currency differently).
    pub fn iso_exponent(&self) -> u32 {
        self.iso_exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.code)
    }
}

/// A payable amount: exact, positive, in the batch's currency. Not yet in minor units: that is
/// the paying PSP's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutAmount {
    pub amount: Decimal,
    pub currency: Currency,
}

impl PayoutAmount {
    /// Validates a stored `netAmount`: a decimal number (plain or with an exponent) held
    /// exactly, and positive. This is the gate every amount passes before a PSP sees it.
    pub fn parse(raw: &str, currency: Currency) -> Result<Self, MoneyError> {
        let amount = parse_exact(raw.trim())?;
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(amount));
        }
        Ok(PayoutAmount { amount, currency })
    }

    /// The amount in units of 10^-`exponent` of the currency, exactly, or why not.
    pub fn scaled(&self, exponent: u32, rule: impl Fn() -> String) -> Result<i64, MoneyError> {
        let normalized = self.amount.normalize();
        if normalized.scale() > exponent {
            return Err(MoneyError::NotPayable {
                amount: self.amount,
                currency: self.currency,
                rule: rule(),
            });
        }
        let too_large = || MoneyError::TooLarge {
            amount: self.amount,
            currency: self.currency,
        };
        let mut scaled = normalized;
        scaled.rescale(exponent);
        if scaled.scale() != exponent {
            return Err(too_large());
        }
        i64::try_from(scaled.mantissa()).map_err(|_| too_large())
    }
}

/// The amount in ISO 4217 minor units, exactly.
pub fn iso_minor_units(amount: &PayoutAmount) -> Result<i64, MoneyError> {
    let exponent = amount.currency.iso_exponent();
    amount.scaled(exponent, || {
        format!(
            "ISO 4217 gives {} {exponent} decimal places",
            amount.currency
        )
    })
}

/// Parses a decimal number exactly: digits with an optional sign, point and exponent (`1E+2`,
/// as DynamoDB may return numbers). More than 28 significant digits cannot be held exactly by
/// `Decimal` and are refused, never rounded.
fn parse_exact(raw: &str) -> Result<Decimal, MoneyError> {
    let not_a_number = || MoneyError::NotANumber(raw.to_owned());
    let (mantissa, exponent) = match raw.find(['e', 'E']) {
        Some(at) => (
            &raw[..at],
            raw[at + 1..].parse::<i64>().map_err(|_| not_a_number())?,
        ),
        None => (raw, 0),
    };
    let (negative, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_ok(whole) || !digits_ok(fraction) {
        return Err(not_a_number());
    }
    let mut digits = format!("{whole}{fraction}");
    let mut scale = fraction.len() as i64 - exponent;
    // Trailing zeros carry no precision; leading zeros carry no value.
    while scale > 0 && digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let too_many = || MoneyError::TooManyDigits(raw.to_owned());
    let mut digits = digits.to_owned();
    if scale < 0 {
        digits.push_str(&"0".repeat(usize::try_from(-scale).map_err(|_| too_many())?));
        scale = 0;
    }
    if digits.len() > 28 || scale > 28 {
        return Err(too_many());
    }
    let mantissa: i128 = digits.parse().map_err(|_| too_many())?;
    let value = Decimal::from_i128_with_scale(mantissa, scale as u32);
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn minor(raw: &str, currency: &str) -> Result<i64, MoneyError> {
        iso_minor_units(&PayoutAmount::parse(
            raw,
            Currency::parse(currency).unwrap(),
        )?)
    }

    #[test]
    fn currencies_are_iso_codes_in_any_case_and_never_non_currencies() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse(" Eur ").unwrap().code(), "EUR");
        assert_eq!(Currency::parse("JPY").unwrap().iso_exponent(), 0);
        assert_eq!(Currency::parse("BHD").unwrap().iso_exponent(), 3);
        for refused in ["XXX", "XTS", "XAU", "ABC", "US", "", "USDD"] {
            assert!(
                matches!(
                    Currency::parse(refused),
                    Err(MoneyError::UnknownCurrency(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn converts_by_iso_exponent() {
        assert_eq!(minor("12.34", "USD"), Ok(1234));
        assert_eq!(minor("12.340", "USD"), Ok(1234));
        assert_eq!(minor("7", "USD"), Ok(700));
        assert_eq!(minor("1500", "JPY"), Ok(1500));
        assert_eq!(minor("1.234", "BHD"), Ok(1234));
        assert_eq!(minor("1E+2", "EUR"), Ok(10000));
        assert_eq!(minor("1.5e1", "EUR"), Ok(1500));
        assert_eq!(minor("000123.4500", "EUR"), Ok(12345));
    }

    #[test]
    fn refuses_what_would_need_rounding_or_is_not_money() {
        assert!(matches!(
            minor("12.345", "USD"),
            Err(MoneyError::NotPayable { .. })
        ));
        assert!(matches!(
            minor("10.5", "JPY"),
            Err(MoneyError::NotPayable { .. })
        ));
        assert!(matches!(minor("0", "USD"), Err(MoneyError::NotPositive(_))));
        assert!(matches!(
            minor("-5.00", "USD"),
            Err(MoneyError::NotPositive(_))
        ));
        for junk in [
            "abc", "", ".", "1..2", "1e", "--1", "1,5", "0x10", "NaN", "inf",
        ] {
            assert!(
                matches!(minor(junk, "USD"), Err(MoneyError::NotANumber(_))),
                "{junk}"
            );
        }
        assert!(matches!(
            minor("99999999999999999999", "USD"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            minor("0.00000000000000000000000001", "USD"),
            Err(MoneyError::NotPayable { .. })
        ));
    }

    #[test]
    fn more_than_28_significant_digits_are_refused_not_rounded() {
        for raw in [
            "12.339999999999999999999999999999",
            "1234567890123456789012345678.9",
            "1e29",
        ] {
            assert!(
                matches!(
                    PayoutAmount::parse(raw, usd()),
                    Err(MoneyError::TooManyDigits(_))
                ),
                "{raw}"
            );
        }
        // 28 digits are held exactly.
        let exact = PayoutAmount::parse("1.234567890123456789012345678", usd()).unwrap();
        assert_eq!(exact.amount.to_string(), "1.234567890123456789012345678");
        assert_eq!(
            PayoutAmount::parse("12.3400000000000000000000000000000", usd())
                .unwrap()
                .amount
                .to_string(),
            "12.34",
            "trailing zeros carry no precision"
        );
    }
}
