// The collections plugin: the store DATABASE_URL or COLLECTIONS_DATA_DIR names, behind the Collections service
// (`app.collections`). Opened (and migrated) by the first collection request, not at boot: a server that never
// serves collections never starts a database (nor a PGlite worker), and the models' warm-up does not wait for one;
// /readyz says `not_opened` until then. Closed with the app.
import fp from "fastify-plugin";
import type { Config } from "../config.js";
import { Collections, createStore } from "../collections/service.js";

declare module "fastify" {
  interface FastifyInstance {
    collections: Collections;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const collections = new Collections(createStore(config), app.models, app.log);
    app.decorate("collections", collections);
    app.addHook("onClose", async () => collections.close());
  },
  { name: "collections", dependencies: ["models"] },
);
