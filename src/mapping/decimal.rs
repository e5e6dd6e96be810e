//! Exact decimal text handling for `numeric` columns.
//!
//! Parses decimal strings (plain or with an exponent, as Decimal128's `Display` writes them) into a
//! canonical plain form without ever going through a float, and checks them against a column's
//! precision and scale. Too many digits is an error, never a rounding.

/// Largest number of digits Postgres `numeric` accepts before the decimal point.
pub const PG_NUMERIC_MAX_INTEGER_DIGITS: usize = 131_072;
/// Largest number of digits Postgres `numeric` accepts after the decimal point.
pub const PG_NUMERIC_MAX_FRACTION_DIGITS: usize = 16_383;

/// A finite decimal number in canonical form: no leading zeros in the integer part, no trailing
/// zeros in the fraction, no negative zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalDecimal {
    pub negative: bool,
    /// Integer digits; `"0"` when the magnitude is below one.
    pub integer: String,
    /// Fraction digits without trailing zeros; empty for integers.
    pub fraction: String,
}

impl CanonicalDecimal {
    /// Digits before the decimal point that count towards precision (`0.5` has none).
    pub fn integer_digits(&self) -> usize {
        if self.integer == "0" {
            0
        } else {
            self.integer.len()
        }
    }

    /// The plain text form, e.g. `-12.5`, `0.000000000000000001`, `100`.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.integer.len() + self.fraction.len() + 2);
        if self.negative {
            out.push('-');
        }
        out.push_str(&self.integer);
        if !self.fraction.is_empty() {
            out.push('.');
            out.push_str(&self.fraction);
        }
        out
    }
}

/// Why a string is not an acceptable decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    /// `NaN`, `Infinity` or `-Infinity` (any case).
    NotFinite(String),
    /// Not decimal syntax at all.
    Syntax(String),
    /// More digits than Postgres `numeric` can hold at all.
    TooLarge(String),
}

impl std::fmt::Display for DecimalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecimalError::NotFinite(s) => write!(f, "{s} is not a finite number"),
            DecimalError::Syntax(s) => write!(f, "{s:?} is not a decimal number"),
            DecimalError::TooLarge(s) => write!(f, "{s} has more digits than numeric can hold"),
        }
    }
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (at least one digit in the mantissa) exactly.
pub fn parse_decimal(input: &str) -> Result<CanonicalDecimal, DecimalError> {
    let lowered = input.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if matches!(lowered.as_str(), "nan" | "inf" | "infinity" | "snan") {
        return Err(DecimalError::NotFinite(input.to_string()));
    }
    let syntax = || DecimalError::Syntax(input.to_string());
    let (negative, body) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => {
            let exp_text = &body[at + 1..];
            let digits = exp_text.trim_start_matches(['+', '-']);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || exp_text.len() - digits.len() > 1
            {
                return Err(syntax());
            }
            // An exponent this large can never fit numeric; refuse before expanding digits.
            let exp: i64 = exp_text
                .parse()
                .map_err(|_| DecimalError::TooLarge(input.to_string()))?;
            (&body[..at], exp)
        }
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(syntax());
    }
    // Significant digits and the position of the decimal point relative to them.
    let digits: String = format!("{int_part}{frac_part}");
    let leading = digits.bytes().take_while(|&b| b == b'0').count();
    let digits = &digits[leading..];
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return Ok(CanonicalDecimal {
            negative: false,
            integer: "0".into(),
            fraction: String::new(),
        });
    }
    // point = number of digits (of `digits`) before the decimal point; may be negative or > len.
    // Computed in i128: the exponent may be anywhere in the i64 range and the mantissa as long as
    // the input, so no intermediate can overflow; anything outside numeric's range is refused
    // before a single digit is expanded (memory stays proportional to the input).
    let too_large = || DecimalError::TooLarge(input.to_string());
    let point: i128 = int_part.len() as i128 - leading as i128 + i128::from(exponent);
    let len = digits.len() as i128;
    let integer_digits = point.max(0);
    let fraction_digits = (len - point).max(0);
    if integer_digits > PG_NUMERIC_MAX_INTEGER_DIGITS as i128
        || fraction_digits > PG_NUMERIC_MAX_FRACTION_DIGITS as i128
    {
        return Err(too_large());
    }
    // Both bounds above keep `point` and `len` within a few hundred thousand.
    let point = i64::try_from(point).map_err(|_| too_large())?;
    let len = i64::try_from(len).map_err(|_| too_large())?;
    let (integer, fraction) = if point <= 0 {
        (
            "0".to_string(),
            format!("{}{}", "0".repeat((-point) as usize), digits),
        )
    } else if point >= len {
        (
            format!("{}{}", digits, "0".repeat((point - len) as usize)),
            String::new(),
        )
    } else {
        let (i, f) = digits.split_at(point as usize);
        (i.to_string(), f.to_string())
    };
    Ok(CanonicalDecimal {
        negative,
        integer,
        fraction,
    })
}

/// Checks a canonical decimal against `numeric(precision, scale)`; returns a reason on failure.
pub fn check_precision_scale(
    value: &CanonicalDecimal,
    precision: u32,
    scale: u32,
) -> Result<(), String> {
    let max_integer = precision.saturating_sub(scale) as usize;
    if value.integer_digits() > max_integer {
        return Err(format!(
            "{} has {} integer digits but numeric({precision},{scale}) allows {max_integer}",
            value.to_text(),
            value.integer_digits()
        ));
    }
    if value.fraction.len() > scale as usize {
        return Err(format!(
            "{} has {} fractional digits but numeric({precision},{scale}) keeps {scale} (no rounding)",
            value.to_text(),
            value.fraction.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        parse_decimal(s)
            .map(|d| d.to_text())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn plain_and_exponent_forms_become_canonical_plain_text() {
        assert_eq!(text("0"), "0");
        assert_eq!(text("-0.000"), "0");
        assert_eq!(text("007.500"), "7.5");
        assert_eq!(text("+12"), "12");
        assert_eq!(text(".5"), "0.5");
        assert_eq!(text("5."), "5");
        assert_eq!(text("1.23E+5"), "123000");
        assert_eq!(text("1E-18"), "0.000000000000000001");
        assert_eq!(text("-1.5e-3"), "-0.0015");
        assert_eq!(
            text("123456789012345678901234567890.1234"),
            "123456789012345678901234567890.1234"
        );
    }

    #[test]
    fn non_numbers_and_non_finite_values_are_rejected() {
        assert!(matches!(
            parse_decimal("NaN"),
            Err(DecimalError::NotFinite(_))
        ));
        assert!(matches!(
            parse_decimal("-Infinity"),
            Err(DecimalError::NotFinite(_))
        ));
        assert!(matches!(
            parse_decimal("inf"),
            Err(DecimalError::NotFinite(_))
        ));
        for bad in [
            "", "-", ".", "1.2.3", "1e", "1e+-3", "abc", " 1", "1 ", "0x10", "1_000",
        ] {
            assert!(
                matches!(parse_decimal(bad), Err(DecimalError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_decimal("1e999999999999999999999"),
            Err(DecimalError::TooLarge(_))
        ));
        assert!(matches!(
            parse_decimal("1e200000"),
            Err(DecimalError::TooLarge(_))
        ));
        for extreme in [
            "1e-9223372036854775808",
            "1e9223372036854775807",
            "-0.5e-9223372036854775808",
            "123456789e9223372036854775807",
            "0.000001e-9223372036854775800",
            "1e-16384",
            "1e131072",
        ] {
            assert!(
                matches!(parse_decimal(extreme), Err(DecimalError::TooLarge(_))),
                "{extreme}"
            );
        }
        // Zero is zero whatever its exponent.
        assert_eq!(text("0e-9223372036854775808"), "0");
        assert_eq!(text("0e9223372036854775807"), "0");
        // The largest exponents numeric still holds.
        assert_eq!(text("1e-16383").len(), 16_385);
        assert_eq!(text("1e131071").len(), 131_072);
    }

    #[test]
    fn precision_and_scale_are_checked_without_rounding() {
        let ok = parse_decimal("12345678901234567890.123456789012345678").unwrap();
        assert_eq!(check_precision_scale(&ok, 38, 18), Ok(()));
        let too_big = parse_decimal("123456789012345678901").unwrap();
        assert!(check_precision_scale(&too_big, 38, 18)
            .unwrap_err()
            .contains("21 integer digits"));
        let too_fine = parse_decimal("0.0000000000000000001").unwrap();
        assert!(check_precision_scale(&too_fine, 38, 18)
            .unwrap_err()
            .contains("19 fractional"));
        let trailing_zeros_fit = parse_decimal("1.500000000000000000000").unwrap();
        assert_eq!(check_precision_scale(&trailing_zeros_fit, 38, 18), Ok(()));
    }
}
