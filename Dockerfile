# gatehouse container image.
#
#   docker build -t gatehouse:0.1.0 .
#   docker run -d --init --name gatehouse -p 8443:8443 -p 14000:14000 gatehouse:0.1.0
#   docker cp gatehouse:/var/lib/gatehouse/tls/ca.crt gatehouse-ca.crt     # the local CA
#   curl --cacert gatehouse-ca.crt https://localhost:8443/hello             # 401: no credential
#   curl --cacert gatehouse-ca.crt https://localhost:8443/hello \
#        -H "Authorization: Bearer $(docker exec gatehouse tail -n1 /var/lib/gatehouse/api-keys)"
#   curl --cacert gatehouse-ca.crt https://localhost:14000/readyz
#
# The admin listener is published on 0.0.0.0 here, so the first admin is never admin/admin:
# pass GATEHOUSE_ADMIN_PASSWORD (from a secret), or read the random one written on first start
# (and change it at the first login):
#   docker exec gatehouse cat /var/lib/gatehouse/initial-admin-password
#
# Two stages on the same Node 24 LTS base: the build stage installs all dependencies (npm ci
# runs the `prepare` script, which compiles src/ to dist/ with tsc) and then drops the dev
# dependencies; the runtime stage gets only dist/, the production node_modules/, package.json
# and the default proxy.yaml. No compiler, no sources, no npm cache in the final image.

FROM node:24-bookworm-slim AS build
WORKDIR /app
# NODE_ENV must not be "production" here: npm ci would skip the devDependencies (typescript)
# that `prepare` needs.
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci \
 && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    GATEHOUSE_CONFIG=/app/proxy.yaml \
    GATEHOUSE_STATE_DIR=/var/lib/gatehouse \
    GATEHOUSE_LISTEN_ADDRESS=0.0.0.0 \
    GATEHOUSE_ADMIN_ADDRESS=0.0.0.0
WORKDIR /app
# Application files stay owned by root and read-only for the runtime user: a compromised
# process cannot rewrite the code or the default config.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY proxy.yaml ./proxy.yaml
# The state directory (certificates, JWKS cache, local users) is the only
# place gatehouse writes. It belongs to the image's `node` user (uid/gid 1000) and is private.
RUN mkdir -p /var/lib/gatehouse \
 && chown 1000:1000 /var/lib/gatehouse \
 && chmod 0700 /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
# Numeric, so that Kubernetes' runAsNonRoot can verify it without resolving a user name.
USER 1000:1000
EXPOSE 8443 14000
# No HEALTHCHECK: the slim image has no curl, and the orchestrator's probes (HTTPS on the admin
# port: /healthz and /readyz) are the source of truth. Node runs as PID 1 and gatehouse handles
# SIGTERM itself (drain, then exit 0); use `docker run --init` if you also want Ctrl-C forwarding
# and zombie reaping.
ENTRYPOINT ["node", "dist/bin/gatehouse.js"]
CMD ["serve"]
