//! JUnit XML: one test case per assertion, so any CI system shows which one failed and why.

use crate::engine::experiment::ExperimentOutcome;
use crate::engine::verdict::AssertionState;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the JUnit XML document.
pub fn render(name: &str, outcome: &ExperimentOutcome) -> String {
    let failures = outcome
        .checks
        .iter()
        .filter(|c| matches!(c.state, AssertionState::Failed(_)))
        .count();
    let errors = outcome
        .checks
        .iter()
        .filter(|c| matches!(c.state, AssertionState::Undecided(_)))
        .count();
    let seconds = outcome.timeline.window.as_secs_f64();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"schism\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">\n",
        outcome.checks.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">\n",
        escape(name),
        outcome.checks.len()
    ));
    let seed = outcome.status.seed.unwrap_or_default();
    xml.push_str(&format!(
        "    <properties><property name=\"seed\" value=\"{seed}\"/></properties>\n"
    ));
    for check in &outcome.checks {
        let case = format!(
            "    <testcase classname=\"schism.{}\" name=\"{}\"",
            escape(name),
            escape(&check.name)
        );
        match &check.state {
            AssertionState::Held => xml.push_str(&format!("{case}/>\n")),
            AssertionState::Failed(message) => xml.push_str(&format!(
                "{case}>\n      <failure message=\"{}\" type=\"assertion\">{}</failure>\n    </testcase>\n",
                escape(message),
                escape(&match &check.detail {
                    Some(detail) => format!("{message}\n\n{detail}"),
                    None => message.clone(),
                })
            )),
            AssertionState::Undecided(message) => xml.push_str(&format!(
                "{case}>\n      <error message=\"{}\" type=\"inconclusive\">{}</error>\n    </testcase>\n",
                escape(message),
                escape(message)
            )),
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{FFFD}"
        );
    }
}
