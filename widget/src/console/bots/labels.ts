// Names people read for the API's enumerations.
import type { BotCategory, BotStatus, DocumentType, ProcessStatus } from '../api.gen';
import { t } from '../i18n';

export const CATEGORIES: BotCategory[] = ['CUSTOMER_SUPPORT', 'SALES', 'HR', 'EDUCATION', 'HEALTHCARE', 'CUSTOM'];

export const categoryLabel = (c: BotCategory): string => ({
  CUSTOMER_SUPPORT: t('catSupport'), SALES: t('catSales'), HR: t('catHr'), EDUCATION: t('catEducation'),
  HEALTHCARE: t('catHealthcare'), CUSTOM: t('catCustom'),
})[c];

export const statusLabel = (s: BotStatus): string => ({
  DRAFT: t('statusDraft'), ACTIVE: t('statusActive'), PAUSED: t('statusPaused'), ARCHIVED: t('statusArchived'),
})[s];

export const processLabel = (s: ProcessStatus): string => ({
  PENDING: t('docPending'), PROCESSING: t('docProcessing'), COMPLETED: t('docCompleted'), FAILED: t('docFailed'),
})[s];

export const typeLabel = (d: DocumentType): string => (d === 'WEB_PAGE' ? t('webPage') : d);

/** Languages offered (any tag the API accepts may be typed). */
export const LANGUAGES = ['en', 'it', 'es', 'fr', 'de', 'pt', 'nl'];
