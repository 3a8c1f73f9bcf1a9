// GET /v1/collections/{name}/items/{id}/image: the image bytes a collection kept for an item (store_images), as they
// were uploaded, with their media type: what the playground shows beside a search result. 404 when the item is
// missing, has no image, or its collection keeps no images (it says which).
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { checkId, checkName } from "../collections/validate.js";
import { ApiError } from "../errors.js";
import { sniffFormat } from "../preprocess/image.js";
import { COLLECTION_ERRORS, ItemParams } from "./collections-schemas.js";

const collectionImage: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    "/v1/collections/:name/items/:id/image",
    {
      schema: {
        summary: "An item's kept image (collections created with store_images)",
        tags: ["collections"],
        params: ItemParams,
        produces: ["image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/avif"],
        response: {
          200: Type.Unsafe<Buffer>({ type: "string", format: "binary", description: "the image, as uploaded" }),
          ...COLLECTION_ERRORS,
        },
      },
    },
    async (req, reply) => {
      const name = checkName(req.params.name);
      const id = checkId(req.params.id);
      const c = await app.collections.get(name); // 404 naming the collection when it is missing
      if (!c.storeImages)
        throw new ApiError("not_found", `collection '${name}' keeps no images (created without store_images)`);
      const [item] = await app.collections.use((s) => s.candidates(name, [id]));
      if (!item) throw new ApiError("not_found", `no item '${id}' in collection '${name}'`);
      if (!item.image) throw new ApiError("not_found", `item '${id}' of collection '${name}' has no image`);
      const sniffed = sniffFormat(item.image);
      const format = sniffed && "format" in sniffed ? sniffed.format : null;
      return reply
        .type(format ? `image/${format}` : "application/octet-stream")
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "private, no-cache")
        .send(item.image);
    },
  );
};

export default collectionImage;
