//! Token and cost totals: per step, per turn, per session, per project.

use opencode_api::Tokens;
use serde::{Deserialize, Serialize};

/// Tokens and cost, summed over steps, turns or sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
    /// Tokens written to the prompt cache.
    pub cache_write: u64,
    /// Cost in the provider's currency (USD for most).
    pub cost: f64,
}

impl Usage {
    /// The usage of one step or message.
    pub fn from_tokens(tokens: &Tokens, cost: f64) -> Usage {
        Usage {
            input: tokens.input,
            output: tokens.output,
            reasoning: tokens.reasoning,
            cache_read: tokens.cache.read,
            cache_write: tokens.cache.write,
            cost,
        }
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.reasoning += other.reasoning;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cost += other.cost;
    }

    /// True when nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_every_field() {
        let tokens: Tokens = serde_json::from_str(
            r#"{"input":10,"output":5,"reasoning":1,"cache":{"read":2,"write":3}}"#,
        )
        .unwrap();
        let mut total = Usage::default();
        assert!(total.is_zero());
        total.add(&Usage::from_tokens(&tokens, 0.5));
        total.add(&Usage::from_tokens(&tokens, 0.25));
        assert_eq!(total.input, 20);
        assert_eq!(total.cache_write, 6);
        assert!((total.cost - 0.75).abs() < 1e-9);
        let json = serde_json::to_string(&total).unwrap();
        assert!(json.contains("\"cacheRead\":4"));
    }
}
