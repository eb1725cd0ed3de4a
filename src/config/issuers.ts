/**
 * The effective list of OIDC issuers: Weaviate's single issuer (`authentication.oidc.*`) first,
 * then `additionalIssuers`, each with unset fields taken from the main section.
 */
import type { Config } from './types.ts'

/** One issuer, fully resolved. `path` is its key path for problem messages. */
export interface IssuerConfig {
  readonly path: string
  readonly issuer: string
  readonly clientId: string
  readonly skipClientIdCheck: boolean
  readonly usernameClaim: string
  readonly groupsClaim: string
  readonly jwksUrl: string
  readonly certificate: string
  readonly algorithms: readonly string[]
}

/** All configured issuers (empty when OIDC is off). */
export function effectiveIssuers(c: Config): IssuerConfig[] {
  const o = c.authentication.oidc
  if (!o.enabled) return []
  const main: IssuerConfig = {
    path: 'authentication.oidc',
    issuer: o.issuer,
    clientId: o.clientId,
    skipClientIdCheck: o.skipClientIdCheck,
    usernameClaim: o.usernameClaim,
    groupsClaim: o.groupsClaim,
    jwksUrl: o.jwksUrl,
    certificate: o.certificate,
    algorithms: o.algorithms,
  }
  return [
    main,
    ...o.additionalIssuers.map((a, i) => ({
      path: `authentication.oidc.additionalIssuers[${i}]`,
      issuer: a.issuer ?? '',
      clientId: a.clientId ?? main.clientId,
      skipClientIdCheck: a.skipClientIdCheck ?? main.skipClientIdCheck,
      usernameClaim: a.usernameClaim ?? main.usernameClaim,
      groupsClaim: a.groupsClaim ?? main.groupsClaim,
      jwksUrl: a.jwksUrl ?? '',
      certificate: a.certificate ?? main.certificate,
      algorithms: a.algorithms ?? main.algorithms,
    })),
  ]
}
