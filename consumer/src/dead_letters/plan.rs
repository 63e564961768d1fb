//! What a replay does, decided a page of dead letters at a time, and the line it prints for each
//! outcome. Nothing here holds more than one page: between pages a plan keeps only the orderIds
//! asked for and which of them it has found, so it can still name the ones with no dead letter.

use std::collections::HashSet;

use protocol::message::OrderMessage;
use protocol::order::OrderId;
use redis_io::scripts::ReplayOutcome;

use super::letter::DeadLetter;

/// Which dead letters a replay is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Orders(Vec<OrderId>),
}

/// What a replay does with one dead letter or one order asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned<'a> {
    /// Run the replay script on it.
    Replay {
        letter: &'a DeadLetter,
        order: OrderMessage,
    },
    /// It carries no order (an unparsable payload): kept, and the replay fails.
    NotAnOrder {
        letter: &'a DeadLetter,
        reason: String,
    },
    /// An orderId asked for has no dead letter (replayed before, or never dead-lettered).
    NoDeadLetter(OrderId),
}

/// A replay in progress over the dead-letter stream, oldest first: [`ReplayPlan::page`] for each
/// page read, then [`ReplayPlan::finish`] for the orderIds that had none.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// `None`: every dead letter. Otherwise the orderIds asked for, each once, as first asked.
    /// Every dead letter of an orderId asked for is replayed, so none is dropped once found.
    asked: Option<Vec<OrderId>>,
    found: HashSet<OrderId>,
}

impl ReplayPlan {
    pub fn new(selection: &Selection) -> ReplayPlan {
        let asked = match selection {
            Selection::All => None,
            Selection::Orders(ids) => {
                let mut seen = HashSet::new();
                Some(ids.iter().filter(|id| seen.insert(*id)).cloned().collect())
            }
        };
        ReplayPlan {
            asked,
            found: HashSet::new(),
        }
    }

    /// The dead letters of this page that the selection names, in stream order.
    pub fn page<'a>(&mut self, letters: &'a [DeadLetter]) -> Vec<Planned<'a>> {
        let mut planned = Vec::new();
        for letter in letters {
            match (letter.order(), &self.asked) {
                (Ok(order), None) => planned.push(Planned::Replay { letter, order }),
                (Ok(order), Some(asked)) if asked.contains(&order.order_id) => {
                    self.found.insert(order.order_id.clone());
                    planned.push(Planned::Replay { letter, order });
                }
                (Err(reason), None) => planned.push(Planned::NotAnOrder { letter, reason }),
                // Not asked for, or (asked by orderId) no order to match.
                (Ok(_), Some(_)) | (Err(_), Some(_)) => {}
            }
        }
        planned
    }

    /// Once every page is planned: the orderIds asked for that had no dead letter.
    pub fn finish(self) -> Vec<Planned<'static>> {
        let found = self.found;
        self.asked
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !found.contains(id))
            .map(Planned::NoDeadLetter)
            .collect()
    }
}

/// The line a replay prints for one dead letter or orderId, and whether it counts as a failure
/// (the dead letter is still there and replaying it again will not help).
pub fn report(
    planned: &Planned<'_>,
    outcome: Option<&Result<ReplayOutcome, String>>,
) -> (String, bool) {
    match (planned, outcome) {
        (Planned::NoDeadLetter(order_id), _) => (
            format!(
                "order {order_id}: no dead letter (replayed before, or never dead-lettered): nothing to do"
            ),
            false,
        ),
        (Planned::NotAnOrder { letter, reason }, _) => (
            format!("dead letter {}: not replayable, {reason}; kept", letter.id),
            true,
        ),
        (Planned::Replay { letter, order }, outcome) => {
            let head = format!("order {} (dead letter {})", order.order_id, letter.id);
            match outcome {
                Some(Ok(ReplayOutcome::Replayed)) => (
                    format!("{head}: replayed: accepted again and delivered"),
                    false,
                ),
                Some(Ok(ReplayOutcome::AlreadyDone { status })) => (
                    format!(
                        "{head}: already {status} (replayed before): dead letter deleted, nothing else changed"
                    ),
                    false,
                ),
                Some(Ok(ReplayOutcome::Gone)) => (
                    format!("{head}: replayed meanwhile by someone else: nothing to do"),
                    false,
                ),
                Some(Ok(ReplayOutcome::NoRecord)) => (
                    format!(
                        "{head}: not replayable, the order has no record (never accepted, or its retention ran out); kept"
                    ),
                    true,
                ),
                Some(Ok(ReplayOutcome::Conflict { owner })) => (
                    format!(
                        "{head}: not replayable, orderId {} belongs to event {owner}, not this payload's {}; kept",
                        order.order_id, order.id
                    ),
                    true,
                ),
                Some(Err(error)) => (format!("{head}: replay failed: {error}"), true),
                None => (format!("{head}: not attempted"), true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::letter::{order_json, test_letter as letter};
    use super::*;

    fn id(s: &str) -> OrderId {
        OrderId::parse("orderId", s).unwrap()
    }

    /// What each planned step names: the dead letter's id, or the orderId that has none.
    fn names(planned: &[Planned<'_>]) -> Vec<String> {
        planned
            .iter()
            .map(|p| match p {
                Planned::Replay { letter, .. } => letter.id.clone(),
                Planned::NotAnOrder { letter, .. } => format!("{} (not an order)", letter.id),
                Planned::NoDeadLetter(id) => id.to_string(),
            })
            .collect()
    }

    /// Plans `selection` over `pages`, as a replay reads them.
    fn plan_pages(pages: &[Vec<DeadLetter>], selection: &Selection) -> Vec<String> {
        let mut plan = ReplayPlan::new(selection);
        let mut planned: Vec<String> = pages.iter().flat_map(|p| names(&plan.page(p))).collect();
        planned.extend(names(&plan.finish()));
        planned
    }

    #[test]
    fn a_replay_plans_what_was_asked_and_names_what_is_missing() {
        let pages = [
            vec![letter("1-0", &order_json("o1")), letter("2-0", "not json")],
            vec![
                letter("3-0", &order_json("o2")),
                letter("4-0", &order_json("o1")),
            ],
        ];
        assert_eq!(
            plan_pages(&pages, &Selection::All),
            ["1-0", "2-0 (not an order)", "3-0", "4-0"]
        );
        // Every dead letter of an orderId asked for, on whichever page; the missing ones last.
        assert_eq!(
            plan_pages(&pages, &Selection::Orders(vec![id("o1"), id("o9")])),
            ["1-0", "4-0", "o9"]
        );
        // However the stream is paged.
        let one_page = [pages.concat()];
        assert_eq!(
            plan_pages(&one_page, &Selection::Orders(vec![id("o1"), id("o9")])),
            ["1-0", "4-0", "o9"]
        );
    }

    #[test]
    fn an_order_asked_for_twice_is_named_once() {
        let pages = [vec![letter("1-0", &order_json("o1"))]];
        let asked = ["o9", "o8", "o9", "o1", "o1"].map(id).to_vec();
        assert_eq!(
            plan_pages(&pages, &Selection::Orders(asked)),
            ["1-0", "o9", "o8"]
        );
    }

    #[test]
    fn nothing_asked_for_and_nothing_there_plans_nothing() {
        assert!(plan_pages(&[], &Selection::All).is_empty());
        assert!(plan_pages(&[vec![]], &Selection::All).is_empty());
    }

    #[test]
    fn only_what_a_replay_cannot_fix_fails() {
        let l = letter("1-0", &order_json("o1"));
        let order = l.order().unwrap();
        let p = Planned::Replay { letter: &l, order };
        let cases = [
            (Ok(ReplayOutcome::Replayed), false, "replayed"),
            (
                Ok(ReplayOutcome::AlreadyDone {
                    status: "applied".into(),
                }),
                false,
                "already applied",
            ),
            (Ok(ReplayOutcome::Gone), false, "nothing to do"),
            (Ok(ReplayOutcome::NoRecord), true, "no record"),
            (
                Ok(ReplayOutcome::Conflict {
                    owner: "e-9".into(),
                }),
                true,
                "belongs to event e-9",
            ),
            (Err("connection refused".into()), true, "replay failed"),
        ];
        for (outcome, fails, says) in cases {
            let (line, failed) = report(&p, Some(&outcome));
            assert_eq!(failed, fails, "{line}");
            assert!(
                line.starts_with("order o1 (dead letter 1-0)") && line.contains(says),
                "{line}"
            );
        }
        let (line, failed) = report(&Planned::NoDeadLetter(id("o9")), None);
        assert!(!failed && line.contains("no dead letter"), "{line}");
    }
}
