/*
 * The one place user-visible strings get their translation macros.
 * Text domain "purple-omemo"; the plugin binds it to its locale dir at load.
 */
#ifndef PURPLE_OMEMO_I18N_H
#define PURPLE_OMEMO_I18N_H

#include <libintl.h>

#define OMEMO_TEXT_DOMAIN "purple-omemo"

#undef _
#undef N_
#define _(s) dgettext(OMEMO_TEXT_DOMAIN, s)
#define N_(s) (s)

#endif
