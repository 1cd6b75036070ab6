//! [`BoxedBroker`]: any broker behind one type, so that a [`QueueSet`](super::QueueSet) can mix
//! a list with a stream.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, Delivery, DeliveryGuarantee, QueueStats, Settlement};
use crate::error::BrokerError;
use crate::message::Source;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// The token of a [`BoxedBroker`] delivery: the inner broker's token, boxed.
#[derive(Clone)]
pub struct BoxedToken(Arc<dyn Any + Send + Sync>);

impl fmt::Debug for BoxedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxedToken")
    }
}

/// The object-safe face of a broker: every [`Broker`] method with a boxed future.
trait DynBroker: Send + Sync {
    fn guarantee(&self) -> DeliveryGuarantee;
    fn source(&self) -> &Source;
    fn fetch(&self, max: usize) -> Fut<'_, Vec<Delivery<BoxedToken>>>;
    fn try_fetch(&self, max: usize) -> Fut<'_, Vec<Delivery<BoxedToken>>>;
    fn settle<'a>(&'a self, batch: &'a [Settlement<BoxedToken>]) -> Fut<'a, ()>;
    fn release(&self, batch: Vec<Delivery<BoxedToken>>) -> Fut<'_, ()>;
    fn is_drained(&self) -> Fut<'_, bool>;
    fn maintain(&self) -> Fut<'_, ()>;
    fn maintenance_interval(&self) -> Option<Duration>;
    fn stats(&self) -> Fut<'_, Option<QueueStats>>;
    fn queues(&self) -> &[Source];
    fn stats_per_queue(&self) -> Fut<'_, Vec<Option<QueueStats>>>;
    fn throttle(&self, token: &BoxedToken, pause: Duration) -> bool;
    fn close(&self) -> Fut<'_, ()>;
}

fn boxed<T: Send + Sync + 'static>(batch: Vec<Delivery<T>>) -> Vec<Delivery<BoxedToken>> {
    batch
        .into_iter()
        .map(|d| Delivery::new(BoxedToken(Arc::new(d.token)), d.message))
        .collect()
}

fn unboxed<T: Clone + 'static>(token: &BoxedToken) -> Result<T, BrokerError> {
    token.0.downcast_ref::<T>().cloned().ok_or_else(|| {
        BrokerError::config("a delivery was handed to a broker it did not come from")
    })
}

impl<B: Broker> DynBroker for B
where
    B::Token: Clone,
{
    fn guarantee(&self) -> DeliveryGuarantee {
        Broker::guarantee(self)
    }
    fn source(&self) -> &Source {
        Broker::source(self)
    }
    fn fetch(&self, max: usize) -> Fut<'_, Vec<Delivery<BoxedToken>>> {
        Box::pin(async move { Broker::fetch(self, max).await.map(boxed) })
    }
    fn try_fetch(&self, max: usize) -> Fut<'_, Vec<Delivery<BoxedToken>>> {
        Box::pin(async move { Broker::try_fetch(self, max).await.map(boxed) })
    }
    fn settle<'a>(&'a self, batch: &'a [Settlement<BoxedToken>]) -> Fut<'a, ()> {
        Box::pin(async move {
            let mut own = Vec::with_capacity(batch.len());
            for s in batch {
                own.push(Settlement {
                    token: unboxed::<B::Token>(&s.token)?,
                    message: s.message.clone(),
                    outcome: s.outcome.clone(),
                });
            }
            Broker::settle(self, &own).await
        })
    }
    fn release(&self, batch: Vec<Delivery<BoxedToken>>) -> Fut<'_, ()> {
        Box::pin(async move {
            let mut own = Vec::with_capacity(batch.len());
            for d in batch {
                own.push(Delivery::new(unboxed::<B::Token>(&d.token)?, d.message));
            }
            Broker::release(self, own).await
        })
    }
    fn is_drained(&self) -> Fut<'_, bool> {
        Box::pin(Broker::is_drained(self))
    }
    fn maintain(&self) -> Fut<'_, ()> {
        Box::pin(Broker::maintain(self))
    }
    fn maintenance_interval(&self) -> Option<Duration> {
        Broker::maintenance_interval(self)
    }
    fn stats(&self) -> Fut<'_, Option<QueueStats>> {
        Box::pin(Broker::stats(self))
    }
    fn queues(&self) -> &[Source] {
        Broker::queues(self)
    }
    fn stats_per_queue(&self) -> Fut<'_, Vec<Option<QueueStats>>> {
        Box::pin(Broker::stats_per_queue(self))
    }
    fn throttle(&self, token: &BoxedToken, pause: Duration) -> bool {
        token
            .0
            .downcast_ref::<B::Token>()
            .is_some_and(|t| Broker::throttle(self, t, pause))
    }
    fn close(&self) -> Fut<'_, ()> {
        Box::pin(Broker::close(self))
    }
}

/// Any [`Broker`] behind one type: a boxed future per call and a boxed token per delivery.
///
/// For a [`QueueSet`](super::QueueSet) of queues of different kinds; a set whose queues are all
/// of one kind (all lists, all streams) needs no boxing.
///
/// ```
/// use pythia_core::queues::{BoxedBroker, QueueSet};
/// use pythia_core::MemoryBroker;
///
/// // With pythia-redis: BoxedBroker::new(list_broker), BoxedBroker::new(stream_broker).
/// let set = QueueSet::strict([
///     BoxedBroker::new(MemoryBroker::new("critical")),
///     BoxedBroker::new(MemoryBroker::new("low")),
/// ])
/// .unwrap();
/// assert_eq!(set.len(), 2);
/// ```
#[derive(Clone)]
pub struct BoxedBroker(Arc<dyn DynBroker>);

impl fmt::Debug for BoxedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoxedBroker").field(self.0.source()).finish()
    }
}

impl BoxedBroker {
    /// `broker` behind the boxed type.
    pub fn new<B: Broker>(broker: B) -> Self
    where
        B::Token: Clone,
    {
        Self(Arc::new(broker))
    }
}

impl Broker for BoxedBroker {
    type Token = BoxedToken;

    fn guarantee(&self) -> DeliveryGuarantee {
        self.0.guarantee()
    }

    fn source(&self) -> &Source {
        self.0.source()
    }

    fn fetch(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery<BoxedToken>>, BrokerError>> + Send {
        self.0.fetch(max)
    }

    fn try_fetch(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery<BoxedToken>>, BrokerError>> + Send {
        self.0.try_fetch(max)
    }

    async fn settle(&self, batch: &[Settlement<BoxedToken>]) -> Result<(), BrokerError> {
        self.0.settle(batch).await
    }

    fn release(
        &self,
        batch: Vec<Delivery<BoxedToken>>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.release(batch)
    }

    fn is_drained(&self) -> impl Future<Output = Result<bool, BrokerError>> + Send {
        self.0.is_drained()
    }

    fn maintain(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.maintain()
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        self.0.maintenance_interval()
    }

    fn stats(&self) -> impl Future<Output = Result<Option<QueueStats>, BrokerError>> + Send {
        self.0.stats()
    }

    fn queues(&self) -> &[Source] {
        self.0.queues()
    }

    fn stats_per_queue(
        &self,
    ) -> impl Future<Output = Result<Vec<Option<QueueStats>>, BrokerError>> + Send {
        self.0.stats_per_queue()
    }

    fn throttle(&self, token: &BoxedToken, pause: Duration) -> bool {
        self.0.throttle(token, pause)
    }

    fn close(&self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.0.close()
    }
}
