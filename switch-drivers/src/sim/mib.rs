//! The async-snmp [`MibHandler`] of the virtual switch: GET/GETNEXT from the cached
//! view, SETs through the core's per-request transactions.

use super::core::SimCore;
use crate::oids;
use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerResult, MibHandler, PreparedSet, RequestContext,
};
use async_snmp::{Oid, PduType, SetCommitError, SetTestResult, SetUndoResult, Value, VarBind};
use std::ops::Bound;
use std::sync::Arc;

/// Serves one registered subtree (`prefix`) of the simulated MIB.
pub struct SimMib {
    pub core: Arc<SimCore>,
    pub prefix: Oid,
}

impl SimMib {
    /// Counts a read request once (the agent calls the handler per varbind).
    fn count_read(&self, ctx: &RequestContext) {
        if matches!(
            ctx.pdu_type(),
            PduType::GetRequest | PduType::GetNextRequest | PduType::GetBulkRequest
        ) {
            self.core.read_counter().varbind(ctx.source(), ctx.request_id());
        }
    }

    fn live(&self, oid: &Oid, value: &Value) -> Value {
        if oid.arcs() == oids::SYS_UPTIME {
            let ticks = self.core.started.elapsed().as_millis() / 10;
            return Value::TimeTicks(u32::try_from(ticks).unwrap_or(u32::MAX));
        }
        if oid.arcs().starts_with(oids::DOT1D_STP_PORT_STATE) {
            let state = self.core.state();
            if let Some(live) = self.core.stp.live(&state, oid, std::time::Instant::now()) {
                return live;
            }
        }
        value.clone()
    }
}

struct Prepared {
    core: Arc<SimCore>,
    key: (std::net::SocketAddr, i32),
}

impl PreparedSet for Prepared {
    fn commit<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, Result<(), SetCommitError>> {
        let ok = self.core.commit(self.key);
        Box::pin(async move { if ok { Ok(()) } else { Err(SetCommitError::Failed) } })
    }

    fn undo<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, SetUndoResult> {
        self.core.undo(self.key);
        Box::pin(async { Ok(()) })
    }

    fn free<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, ()> {
        self.core.drop_txn(self.key);
        Box::pin(async {})
    }

    fn finalize<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, ()> {
        self.core.drop_txn(self.key);
        Box::pin(async {})
    }
}

impl MibHandler for SimMib {
    fn get<'a>(
        &'a self,
        ctx: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetResult>> {
        self.count_read(ctx);
        let view = self.core.view();
        let result = match view.get(oid) {
            Some(v) => GetResult::Value(self.live(oid, v)),
            None => GetResult::NoSuchInstance,
        };
        Box::pin(async move { Ok(result) })
    }

    fn get_next<'a>(
        &'a self,
        ctx: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        self.count_read(ctx);
        let view = self.core.view();
        let next = view
            .range((Bound::Excluded(oid.clone()), Bound::Unbounded))
            .find(|(o, _)| o.starts_with(&self.prefix))
            .map(|(o, v)| GetNextResult::Value(VarBind::new(o.clone(), self.live(o, v))))
            .unwrap_or(GetNextResult::EndOfMibView);
        Box::pin(async move { Ok(next) })
    }

    fn test_set<'a>(
        &'a self,
        ctx: &'a RequestContext,
        oid: &'a Oid,
        value: &'a Value,
    ) -> BoxFuture<'a, SetTestResult> {
        let key = (ctx.source(), ctx.request_id());
        let result = self
            .core
            .test_set(key, oid, value)
            .map(|()| Box::new(Prepared { core: self.core.clone(), key }) as Box<dyn PreparedSet>);
        Box::pin(async move { result })
    }
}
