// What a member's role lets the console offer (the server decides; this only hides what it
// would refuse). Mirrors admin-api's `Caller::require` (routes.rs): writes need an owner or an
// admin; the desk needs an agent or above.
import type { Role } from './session';

export const canWrite = (role: Role): boolean => role === 'owner' || role === 'admin';
export const canTakeChats = (role: Role): boolean => role !== 'viewer';
