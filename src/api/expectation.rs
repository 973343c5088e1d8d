//! The `expect` of a Prometheus assertion: a comparison with a threshold, `< 0.05` (pure).

/// A comparison of a sample with a threshold: `< 0.05`, `>= 100`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expectation {
    /// The operator.
    pub op: Comparator,
    /// The threshold.
    pub threshold: f64,
}

/// How a sample is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `<`
    Below,
    /// `<=`
    AtMost,
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Comparator {
    fn symbol(self) -> &'static str {
        match self {
            Comparator::Below => "<",
            Comparator::AtMost => "<=",
            Comparator::Above => ">",
            Comparator::AtLeast => ">=",
            Comparator::Equal => "==",
            Comparator::NotEqual => "!=",
        }
    }
}

impl Expectation {
    /// Parses `< 0.05`, `>=100`, `== 1`.
    pub fn parse(text: &str) -> Result<Expectation, String> {
        let text = text.trim();
        let (op, rest) = [
            ("<=", Comparator::AtMost),
            (">=", Comparator::AtLeast),
            ("==", Comparator::Equal),
            ("!=", Comparator::NotEqual),
            ("<", Comparator::Below),
            (">", Comparator::Above),
        ]
        .into_iter()
        .find_map(|(symbol, op)| text.strip_prefix(symbol).map(|rest| (op, rest)))
        .ok_or_else(|| {
            format!("{text:?} must start with one of <, <=, >, >=, ==, != and then a number, e.g. \"< 0.05\"")
        })?;
        let threshold: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("{:?} after {} is not a number", rest.trim(), op.symbol()))?;
        if !threshold.is_finite() {
            return Err(format!("the threshold {threshold} is not a finite number"));
        }
        Ok(Expectation { op, threshold })
    }

    /// Whether `value` meets it. NaN meets nothing.
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            Comparator::Below => value < t,
            Comparator::AtMost => value <= t,
            Comparator::Above => value > t,
            Comparator::AtLeast => value >= t,
            Comparator::Equal => value == t,
            Comparator::NotEqual => !value.is_nan() && value != t,
        }
    }

    /// Of two values, the one further on the wrong side of the threshold.
    pub fn worse(&self, a: f64, b: f64) -> f64 {
        match self.op {
            Comparator::Below | Comparator::AtMost => a.max(b),
            Comparator::Above | Comparator::AtLeast => a.min(b),
            // Any breach is as bad as another: the first one found is kept.
            Comparator::Equal | Comparator::NotEqual => {
                if self.holds(a) && !self.holds(b) {
                    b
                } else {
                    a
                }
            }
        }
    }
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_with_or_without_spaces_and_refuse_nonsense() {
        assert_eq!(
            Expectation::parse("<= 0.05").unwrap(),
            Expectation {
                op: Comparator::AtMost,
                threshold: 0.05
            }
        );
        assert_eq!(Expectation::parse(">100").unwrap().op, Comparator::Above);
        assert!(
            Expectation::parse("about 3")
                .unwrap_err()
                .contains("must start with")
        );
        assert!(
            Expectation::parse("< lots")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(Expectation::parse("< NaN").is_err());
    }
}
