/**
 * Editor credentials: `Authorization: Bearer $ADMIN_TOKEN` (common/bearer-token.ts).
 */
import { requireBearer } from '../common/bearer-token.js'

/** Throws 401 without credentials, 403 with wrong ones (or when no token is configured). */
export const requireEditor = (adminToken: string | undefined) => requireBearer(adminToken)
