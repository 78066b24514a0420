//! `postgres` and `redis` as test parameters: the built-in services'
//! [`Resolve`] types, which hand each test its room.

use super::current::{postgres_handle, redis_handle};
use super::{Node, Resolve, Service, TestContext};
use crate::builtin::{POSTGRES, REDIS};
use crate::service::handle::{Postgres, Redis};

/// `postgres` in `#[cleanroom::test(postgres)]`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct postgres {}

impl Resolve for postgres {
    type Output = Postgres;
    const NODE: Node = Node::service(&POSTGRES);
    fn resolve(ctx: &mut TestContext) -> Postgres {
        let (container, room) = ctx.service(&POSTGRES);
        postgres_handle(container, room)
    }
}
impl Service for postgres {}

/// `redis` in `#[cleanroom::test(redis)]`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct redis {}

impl Resolve for redis {
    type Output = Redis;
    const NODE: Node = Node::service(&REDIS);
    fn resolve(ctx: &mut TestContext) -> Redis {
        let (container, room) = ctx.service(&REDIS);
        redis_handle(container, room)
    }
}
impl Service for redis {}
