//! Tower layers that keep state in Redis around a worker's handler: idempotency (a message
//! with a key already completed is acked without running, [`idempotency`]) and job status (each
//! message's state, attempts and result, [`job_status`]).

pub mod idempotency;
pub mod job_status;
