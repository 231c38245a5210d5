// A stand-in for `cloudflare:workers` so the Worker's modules can be imported outside workerd to DISCOVER
// the app's surface (reliability/lib/surface.ts walks the Hono routes and the GraphQL schema). Nothing runs
// against it: the classes exist only so that `class X extends DurableObject` loads.
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}
export class WorkerEntrypoint extends DurableObject {}
export class RpcTarget {}
export const env = {};
