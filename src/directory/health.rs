//! What Baton has measured about each agent: success rate and latency, exponentially weighted so
//! recent calls count most. Ranking uses it to prefer agents that answer, and answer fast.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Whether a call found the agent doing its part (answering or asking back), the event its
/// measured success rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Reached,
    Failed,
}

/// Weight of the newest call in the moving averages.
const ALPHA: f64 = 0.2;

/// Measured behaviour of one agent, as this process saw its calls (kept in memory: it starts
/// again with the process, and each process of a cluster measures its own calls).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentHealth {
    /// 0 to 1, recent calls weighing most; starts at 1 (innocent until proven failing).
    pub success_rate: f64,
    /// Milliseconds, recent calls weighing most; 0 until the first call.
    pub latency_ms: f64,
    /// Calls measured (0: never called by this process, so the two figures are the defaults).
    pub calls: u64,
}

impl Default for AgentHealth {
    fn default() -> Self {
        AgentHealth {
            success_rate: 1.0,
            latency_ms: 0.0,
            calls: 0,
        }
    }
}

/// Health of every agent called by this process.
#[derive(Debug, Default)]
pub struct HealthBook {
    agents: Mutex<HashMap<String, AgentHealth>>,
}

impl HealthBook {
    /// Records one call's outcome.
    pub fn record(&self, agent_id: &str, reach: Reach, elapsed: Duration) {
        let Ok(mut agents) = self.agents.lock() else {
            return;
        };
        let health = agents.entry(agent_id.to_owned()).or_default();
        let ms = elapsed.as_secs_f64() * 1000.0;
        if health.calls == 0 {
            health.latency_ms = ms;
        } else {
            health.latency_ms += ALPHA * (ms - health.latency_ms);
        }
        health.success_rate +=
            ALPHA * (f64::from(u8::from(reach == Reach::Reached)) - health.success_rate);
        health.calls += 1;
    }

    /// What is known about an agent (the defaults when it was never called).
    pub fn of(&self, agent_id: &str) -> AgentHealth {
        self.agents
            .lock()
            .ok()
            .and_then(|a| a.get(agent_id).copied())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lower_the_success_rate() {
        let book = HealthBook::default();
        assert_eq!(book.of("a").success_rate, 1.0);
        for _ in 0..5 {
            book.record("a", Reach::Failed, Duration::from_millis(100));
        }
        assert!(book.of("a").success_rate < 0.4);
        book.record("b", Reach::Reached, Duration::from_millis(50));
        assert_eq!(book.of("b").latency_ms, 50.0);
    }
}
