import { currentLang, setLang, t, type Lang } from '../i18n';

/** The console's language (signed out in the header; signed in on the account page). */
export function LanguagePicker() {
  return (
    <span class="lang">
      <label for="lang" class="sr-only">{t('language')}</label>
      <select id="lang" value={currentLang()} onChange={(e) => void setLang((e.target as HTMLSelectElement).value as Lang)}>
        <option value="en">English</option>
        <option value="it">Italiano</option>
      </select>
    </span>
  );
}
