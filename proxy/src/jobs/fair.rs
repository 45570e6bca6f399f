//! The relay's own queue: the jobs it holds until ComfyUI has room, and whose turn is next.
//!
//! ComfyUI runs prompts first in, first out, so one device that queues ten jobs makes every
//! other device wait behind all ten. The relay hands ComfyUI only a few at a time and keeps
//! the rest here; the next one handed is the first job of the device served least recently (a
//! device never served goes first, the one waiting longest among them), so devices with
//! waiting jobs take turns. Within a device its jobs go in the order of their rank, which
//! the device may change.

use std::collections::{BTreeSet, HashMap};

use crate::device::DeviceId;

/// One device's held jobs as `(rank, id)`, lowest rank first.
type Held = BTreeSet<(u64, String)>;

/// When a device was last served, then its first job's rank and id: the lowest goes next.
type TurnKey<'a> = (u64, u64, &'a str);

/// The held jobs, by device, and when each device was last served.
#[derive(Debug, Default)]
pub struct FairQueue {
    /// Each device's held jobs.
    held: HashMap<DeviceId, Held>,
    /// The turn at which each device was last handed a job (0: never).
    served: HashMap<DeviceId, u64>,
    /// Turns taken so far.
    turns: u64,
}

impl FairQueue {
    /// Holds job `id` of `device` at `rank` among that device's held jobs.
    pub fn push(&mut self, device: &DeviceId, rank: u64, id: &str) {
        self.held
            .entry(device.clone())
            .or_default()
            .insert((rank, id.to_owned()));
    }

    /// Stops holding job `id` of `device`, held at `rank`; whether it was held.
    pub fn remove(&mut self, device: &DeviceId, rank: u64, id: &str) -> bool {
        let Some(jobs) = self.held.get_mut(device) else {
            return false;
        };
        let removed = jobs.remove(&(rank, id.to_owned()));
        if jobs.is_empty() {
            self.held.remove(device);
        }
        removed
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Each device holding jobs with the key of its turn (when it was last served, then the
    /// rank and id of its first job: lowest goes first) and its jobs.
    fn devices_in_turn(&self) -> impl Iterator<Item = (TurnKey<'_>, &DeviceId, &Held)> {
        self.held.iter().filter_map(|(device, jobs)| {
            let (rank, id) = jobs.first()?;
            let served = self.served.get(device).copied().unwrap_or(0);
            Some(((served, *rank, id.as_str()), device, jobs))
        })
    }

    /// Takes job `id` of `device`, held at `rank`, to hand to ComfyUI, and counts the turn
    /// (the first in [`FairQueue::order`] is the one whose turn it is; a later one is taken
    /// when no server can run those before it); whether it was held.
    pub fn take(&mut self, device: &DeviceId, rank: u64, id: &str) -> bool {
        let taken = self.remove(device, rank, id);
        if taken {
            self.serve(device);
        }
        taken
    }

    /// Counts a turn for `device`: it was just handed a job (taken, or given to ComfyUI at once
    /// because nothing was held).
    pub fn serve(&mut self, device: &DeviceId) {
        self.turns += 1;
        self.served.insert(device.clone(), self.turns);
    }

    /// Every held job's id in the order they will be handed if nothing changes: rounds in which
    /// each device still holding jobs hands its next one, the devices in the order of their
    /// first turn (served least recently, then holding the lowest rank; each served goes to
    /// the back).
    pub fn order(&self) -> Vec<&str> {
        let mut devices: Vec<_> = self
            .devices_in_turn()
            .map(|(key, _, jobs)| (key, jobs.iter()))
            .collect();
        devices.sort_by_key(|(first, _)| *first);
        let mut order = Vec::with_capacity(self.held.values().map(BTreeSet::len).sum());
        while !devices.is_empty() {
            devices.retain_mut(|(_, jobs)| {
                jobs.next().map(|(_, id)| order.push(id.as_str())).is_some()
            });
        }
        order
    }

    /// `device`'s held jobs as `(rank, id)`, in their order.
    pub fn of(&self, device: &DeviceId) -> Vec<(u64, String)> {
        self.held
            .get(device)
            .map(|jobs| jobs.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// New ranks for `device`'s held jobs `jobs` (in their order) after job `id` moves to
/// `position` among them: the same ranks, handed out in the new order, so jobs held later still
/// come after. `None` when `id` is not among them.
pub fn moved(jobs: &[(u64, String)], id: &str, position: usize) -> Option<Vec<(u64, String)>> {
    let from = jobs.iter().position(|(_, held)| held == id)?;
    let mut ids: Vec<&str> = jobs.iter().map(|(_, held)| held.as_str()).collect();
    let moving = ids.remove(from);
    ids.insert(position.min(ids.len()), moving);
    Some(
        jobs.iter()
            .map(|(rank, _)| *rank)
            .zip(ids)
            .map(|(rank, id)| (rank, id.to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceSecret;
    use proptest::prelude::*;

    fn devices(n: usize) -> Vec<DeviceId> {
        (0..n).map(|_| DeviceSecret::generate().device()).collect()
    }

    /// Takes the job whose turn it is, as the relay does when every server can run it.
    fn take_next(queue: &mut FairQueue) -> Option<(DeviceId, String)> {
        let id = (*queue.order().first()?).to_owned();
        let (device, rank) = queue.held.iter().find_map(|(device, jobs)| {
            jobs.iter()
                .find(|(_, held)| *held == id)
                .map(|(rank, _)| (device.clone(), *rank))
        })?;
        assert!(queue.take(&device, rank, &id));
        Some((device, id))
    }

    #[test]
    fn a_device_with_one_job_goes_before_the_rest_of_one_with_ten() {
        let [busy, other] = <[DeviceId; 2]>::try_from(devices(2)).unwrap();
        let mut queue = FairQueue::default();
        for n in 0..10 {
            queue.push(&busy, n, &format!("busy{n}"));
        }
        // Two of the busy device's jobs were handed before the other device queued.
        take_next(&mut queue);
        take_next(&mut queue);
        queue.push(&other, 100, "other");
        assert_eq!(queue.order()[..3], ["other", "busy2", "busy3"]);
    }

    #[test]
    fn devices_take_turns_and_a_device_keeps_its_own_order() {
        let [a, b] = <[DeviceId; 2]>::try_from(devices(2)).unwrap();
        let mut queue = FairQueue::default();
        for n in 0..4 {
            queue.push(&a, n, &format!("a{n}"));
        }
        queue.push(&b, 10, "b0");
        queue.push(&b, 11, "b1");
        assert_eq!(queue.order(), ["a0", "b0", "a1", "b1", "a2", "a3"]);
        assert_eq!(queue.order().len(), 6, "order() takes nothing");
    }

    #[test]
    fn a_moved_job_keeps_the_device_ranks_and_goes_where_it_was_put() {
        let jobs = vec![
            (5, "x".to_owned()),
            (7, "y".to_owned()),
            (9, "z".to_owned()),
        ];
        let ranked = moved(&jobs, "z", 0).unwrap();
        assert_eq!(
            ranked,
            [
                (5, "z".to_owned()),
                (7, "x".to_owned()),
                (9, "y".to_owned())
            ]
        );
        assert_eq!(moved(&jobs, "x", 99).unwrap()[2], (9, "x".to_owned()));
        assert_eq!(moved(&jobs, "nope", 0), None);
    }

    #[test]
    fn a_removed_job_is_no_longer_held_or_handed() {
        let [a] = <[DeviceId; 1]>::try_from(devices(1)).unwrap();
        let mut queue = FairQueue::default();
        queue.push(&a, 1, "one");
        queue.push(&a, 2, "two");
        assert!(queue.remove(&a, 1, "one"));
        assert!(!queue.remove(&a, 1, "one"));
        assert_eq!(queue.order(), ["two"]);
        assert!(!queue.take(&a, 1, "one"), "a removed job cannot be taken");
        assert_eq!(take_next(&mut queue), Some((a, "two".to_owned())));
        assert!(queue.is_empty());
    }

    proptest! {
        /// Whatever devices queue, in whatever order: every held job is handed exactly once,
        /// each device's jobs in rank order, and between two turns of one device every other
        /// device still holding jobs has a turn.
        #[test]
        fn every_device_with_waiting_jobs_has_a_turn_before_anyone_has_two(
            pushes in proptest::collection::vec((0..4usize, 0..1000u64), 1..60),
        ) {
            let devices = devices(4);
            let mut queue = FairQueue::default();
            for (n, (device, rank)) in pushes.iter().enumerate() {
                queue.push(&devices[*device], *rank, &format!("{device}-{n}"));
            }
            let order: Vec<String> = queue.order().into_iter().map(str::to_owned).collect();
            let total = order.len();
            let mut handed: Vec<(DeviceId, String)> = Vec::new();
            let mut last_turn: HashMap<DeviceId, usize> = HashMap::new();
            while let Some((device, id)) = take_next(&mut queue) {
                let waiting_others: Vec<&DeviceId> =
                    queue.held.keys().filter(|d| **d != device).collect();
                if let Some(previous) = last_turn.get(&device) {
                    for other in waiting_others {
                        // A device still waiting now was waiting at the previous turn too
                        // (nothing is pushed meanwhile): it must have had a turn since.
                        prop_assert!(last_turn.get(other).is_some_and(|t| t > previous));
                    }
                }
                last_turn.insert(device.clone(), handed.len());
                handed.push((device, id));
            }
            prop_assert_eq!(handed.len(), total);
            let taken: Vec<&String> = handed.iter().map(|(_, id)| id).collect();
            prop_assert_eq!(taken, order.iter().collect::<Vec<_>>(), "order() foretells the turns");
            for device in &devices {
                let ranks: Vec<(u64, usize)> = handed
                    .iter()
                    .filter(|(d, _)| d == device)
                    .map(|(_, id)| {
                        let n: usize = id.split('-').nth(1).unwrap().parse().unwrap();
                        (pushes[n].1, n)
                    })
                    .collect();
                let mut sorted = ranks.clone();
                sorted.sort_by_key(|(rank, n)| (*rank, format!("{}-{n}", pushes[*n].0)));
                prop_assert_eq!(ranks, sorted);
            }
        }
    }
}
