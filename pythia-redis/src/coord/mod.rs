//! Coordination beside the brokers: circuit breakers shared by every replica ([`breaker`]), delayed messages ([`delayed`]), where a message goes when
//! it is due ([`destination`]), distributed locks ([`lock`]) and periodic jobs fired once per
//! slot across replicas ([`periodic`], on a [`Schedule`](periodic::Schedule)), and what waits in a
//! queue's schedule ([`scheduled`]). Every key is under the key prefix with the queue (or
//! lock) name as hash tag; every multi-key step is one Lua script.

pub mod breaker;
pub mod delayed;
pub mod destination;
pub mod lock;
pub mod periodic;
mod schedule;
pub mod scheduled;
