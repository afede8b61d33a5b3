// A real OAuth 2.1 authorization server for the auth tests: oidc-provider (npm), issuing JWT access
// tokens for RFC 8707 resource indicators with the client_credentials grant.
//
// usage: node oidc_issuer.mjs PORT CONFIG.json
//   CONFIG: {"jwks": {"keys": [private JWKs]}, "clients": [{"client_id", "client_secret"}]}
// The issuer is http://127.0.0.1:PORT. Every resource is accepted (the gateway decides which audience
// it takes); tokens carry the scope the client asked for, among "mcp" and "mcp:admin".
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, configPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id, client_secret: c.client_secret, grant_types: ["client_credentials"],
    redirect_uris: [], response_types: [], scope: "mcp mcp:admin",
    id_token_signed_response_alg: config.jwks.keys[0].alg,
  })),
  jwks: config.jwks,
  scopes: ["mcp", "mcp:admin"],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: "mcp mcp:admin", audience: resource, accessTokenTTL: 600, accessTokenFormat: "jwt",
        jwt: { sign: { alg: config.jwks.keys[0].alg } },
      }),
    },
  },
});
provider.listen(Number(port), "127.0.0.1", () => console.log(`issuer ${issuer} ready`));
