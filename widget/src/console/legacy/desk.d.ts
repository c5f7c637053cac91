// Types for `desk.js` (plain JavaScript, kept as it was written; see its header).

export interface Agent { id: string; name: string }

export interface DeskContext {
  /** Whether this member may take conversations (agents and up): only they open the socket. */
  agent: boolean;
  /** The current access token (null once signed out). */
  token(): string | null;
  /** Refreshes the session (single flight); ends it when the server refuses. */
  refresh(): Promise<void>;
  /** A GET with the session, retried once after a refresh. */
  authed(path: string): Promise<Response>;
  /** What the header's status says (`data-state`: connecting, connected, viewer). */
  setStatus(text: string, state: string): void;
  /** The agent the socket welcomed. */
  setAgent(agent: Agent): void;
}

export interface Desk {
  /** Shows the inbox, the dashboard, or neither (another section is open). */
  show(view: 'inbox' | 'dashboard' | null): void;
  /** Sets the agent's presence. */
  presence(status: 'online' | 'away'): void;
  /** Re-authenticates the socket with a refreshed token. */
  reauth(token: string): void;
  /** Closes the socket and empties the container. */
  stop(): void;
}

export function startDesk(root: HTMLElement, ctx: DeskContext): Desk;
