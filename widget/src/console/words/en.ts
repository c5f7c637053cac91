// The console's words in English: the source table (`it.ts` must have every key, `tsc` checks).
// `{name}` placeholders are filled by `t()`.
export const en = {
  title: 'Parla',
  loading: 'Loading…',
  language: 'Language',
  views: 'Sections',
  inbox: 'Inbox',
  dashboard: 'Dashboard',
  presence: 'Presence',
  online: 'Online',
  away: 'Away',
  signOut: 'Sign out',
  signedOut: 'signed out',
  // signing in
  signInTitle: 'Sign in',
  email: 'Email',
  password: 'Password',
  totp: 'Authentication code (if enabled)',
  totpNeeded: 'Enter the code from your authenticator app, or a recovery code.',
  signIn: 'Sign in',
  signingIn: 'Signing in…',
  noAccount: 'New to Parla?',
  createAccount: 'Create an account',
  // registering
  registerTitle: 'Create your workspace',
  name: 'Your name',
  company: 'Company (optional)',
  passwordHint: 'At least 12 characters.',
  register: 'Create account',
  registering: 'Creating…',
  haveAccount: 'Already have an account?',
  registeredTitle: 'Check your inbox',
  registered: 'We sent a verification link to {email}. Open it to verify your address, then sign in.',
  toSignIn: 'Go to sign in',
  emailTaken: 'An account with this email already exists.',
  // verifying
  verifyTitle: 'Verify your email',
  verifying: 'Verifying…',
  verified: 'Your email address is verified.',
  verifyFailed: 'This link is invalid, already used or expired.',
  noToken: 'This link has no token.',
  continue: 'Continue',
  // errors
  error: 'Something went wrong: {message}',
  network: 'The server could not be reached. Check your connection and try again.',
  tooMany: 'Too many attempts. Try again in {seconds} s.',
  sessionEnded: 'Your session ended; sign in again.',
};

export type Words = typeof en;
