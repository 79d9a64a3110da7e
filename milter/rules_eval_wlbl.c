/*
 * rules_eval_wlbl.c - SpamAssassin's welcome- and blocklists by address
 * (WLBLEval): the welcomelist_from, blocklist_from, welcomelist_to,
 * blocklist_to, more_spam_to and all_spam_to directives (with their old
 * whitelist/blacklist names and the un... forms), blocklist_uri_host and
 * welcomelist_uri_host, the named lists of enlist_addrlist,
 * (def_)welcomelist_from_rcvd (an address with its relay's domain or IP),
 * the SPF and DKIM plugins' welcomelist_from_spf, welcomelist_from_dkim and
 * welcomelist_auth (answered with the auth module's results),
 * WelcomeListSubject's welcomelist_subject and blocklist_subject, and the
 * tests that look the message's sender and recipient addresses, Subject
 * and URIs' hosts up in them.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>

#include "auth.h"
#include "rules_int.h"

enum {
	WL_FROM,
	BL_FROM,
	WL_TO,
	BL_TO,
	MORE_SPAM_TO,
	ALL_SPAM_TO,
	/* the SPF plugin's, and welcomelist_auth's: SPF or an author domain signature */
	WL_FROM_SPF,
	DEF_WL_FROM_SPF,
	WL_AUTH,
	DEF_WL_AUTH,
	BOUNCE_RELAYS, /* VBounce's welcomelist_bounce_relays: host name patterns */
	WLBL_N
};

enum { DKIM_WL, DKIM_DEF, DKIM_N };

/* welcomelist_from_dkim: an author pattern and the signing domain it needs */
struct dkim_entry {
	char *addr; /* lower-case pattern */
	char *sdid; /* lower-case; "" for the author's own domain */
};

struct host_entry {
	char *host;  /* lower-case domain or address */
	bool listed; /* false for a "!host" exception */
};

/* enlist_uri_host's named lists; blocklist_uri_host is the list BLOCK */
struct hostlist {
	char *name;
	struct host_entry *h; /* sorted by host, each host once */
	size_t n, cap;
};

/* A list of lower-case address patterns: * any run, ? one byte. */
struct addrlist {
	char *name; /* enlist_addrlist's list name, as written */
	char **v;
	size_t n, cap;
};

/* def_welcomelist_from_rcvd: an address pattern and the relay it must come through */
struct rcvd_entry {
	char *addr;   /* lower-case pattern */
	char *domain; /* lower-case rDNS domain, or "[IP]" with an optional "/len" */
};

enum { SUBJ_WELCOME, SUBJ_BLOCK, SUBJ_N };

struct rules_wlbl {
	char **v[WLBL_N]; /* lower-case patterns: * any run, ? one byte */
	size_t n[WLBL_N], cap[WLBL_N];
	struct addrlist *lists; /* enlist_addrlist */
	size_t nlists;
	struct rcvd_entry *def; /* def_welcomelist_from_rcvd */
	size_t ndef, capdef;
	struct rcvd_entry *rcvd; /* welcomelist_from_rcvd */
	size_t nrcvd, caprcvd;
	struct dkim_entry *dkim[DKIM_N]; /* welcomelist_from_dkim, def_welcomelist_from_dkim */
	size_t ndkim[DKIM_N], capdkim[DKIM_N];
	struct addrlist subj[SUBJ_N]; /* welcomelist_subject, blocklist_subject (whole lines) */
	struct hostlist *hl; /* enlist_uri_host, blocklist_uri_host, welcomelist_uri_host */
	size_t nhl;
	/* DKIM's adsp_override: a domain or "*.domain" and its practice, N/U/A/D/1/2/3 */
	struct host_entry *adsp;
	char *adsp_practice;
	size_t nadsp, capadsp;
};

static struct rules_wlbl *wlbl_of(rules_t *r)
{
	if (r->wlbl == NULL)
		r->wlbl = xalloc_calloc(1, sizeof(*r->wlbl));
	return r->wlbl;
}

static struct hostlist *hostlist_of(struct rules_wlbl *w, const char *name, size_t n)
{
	for (size_t i = 0; i < w->nhl; i++)
		if (strlen(w->hl[i].name) == n && strncmp(w->hl[i].name, name, n) == 0)
			return &w->hl[i];
	w->hl = xalloc_realloc(w->hl, (w->nhl + 1) * sizeof(*w->hl));
	w->hl[w->nhl] = (struct hostlist){.name = xalloc_strndup(name, n)};
	return &w->hl[w->nhl++];
}

/*
 * Where host stands in l's entries, kept sorted by host so that a lookup
 * (once per URI host and parent domain, per list, per message) is a binary
 * search: PDS_CASHSHORTENER's list alone has 136 entries. *found says
 * whether it is there.
 */
static size_t hostlist_find(const struct hostlist *l, const char *host, bool *found)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->h[mid].host, host);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Adds (or, with remove, takes out) the hosts of rest, "!host" an exception. */
static void hostlist_edit(struct hostlist *l, const char *rest, bool remove)
{
	const char *w;
	size_t n;
	for (const char *p = rest; rules_eval_word(&p, &w, &n);) {
		bool listed = *w != '!';
		char *host = rules_eval_lower_dup(w + !listed, n - !listed);
		bool found;
		size_t k = hostlist_find(l, host, &found);
		if (found && remove) {
			free(l->h[k].host);
			memmove(&l->h[k], &l->h[k + 1], (l->n - k - 1) * sizeof(*l->h));
			l->n--;
		} else if (found) {
			l->h[k].listed = listed; /* a later line wins */
		}
		if (found || remove) {
			free(host);
			continue;
		}
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 16;
			l->h = xalloc_realloc(l->h, l->cap * sizeof(*l->h));
		}
		memmove(&l->h[k + 1], &l->h[k], (l->n - k) * sizeof(*l->h));
		l->h[k] = (struct host_entry){host, listed};
		l->n++;
	}
}

/*
 * blocklist_uri_host and welcomelist_uri_host (the lists BLOCK and
 * WELCOME), enlist_uri_host (NAME) host..., delist_uri_host [(NAME)]
 * host... (without a name: from every list so far). NULL, or an error.
 */
static const char *host_directive(rules_t *r, const char *dir, const char *rest, bool *handled)
{
	*handled = true;
	if (strcmp(dir, "blocklist_uri_host") == 0 || strcmp(dir, "blacklist_uri_host") == 0) {
		hostlist_edit(hostlist_of(wlbl_of(r), "BLOCK", 5), rest, false);
		return NULL;
	}
	if (strcmp(dir, "welcomelist_uri_host") == 0 || strcmp(dir, "whitelist_uri_host") == 0) {
		hostlist_edit(hostlist_of(wlbl_of(r), "WELCOME", 7), rest, false);
		return NULL;
	}
	bool enlist = strcmp(dir, "enlist_uri_host") == 0;
	if (!enlist && strcmp(dir, "delist_uri_host") != 0) {
		*handled = false;
		return NULL;
	}
	const char *close = rest[0] == '(' ? strchr(rest, ')') : NULL;
	if (close != NULL && (close == rest + 1 || (close[1] != ' ' && close[1] != '\t')))
		close = NULL;
	if (close == NULL && enlist)
		return "expected (LISTNAME) and host names";
	const char *hosts = close ? close + 1 : rest;
	if (hosts[strspn(hosts, " \t")] == '\0')
		return "expected host names";
	struct rules_wlbl *w = wlbl_of(r);
	if (close != NULL)
		hostlist_edit(hostlist_of(w, rest + 1, (size_t)(close - rest - 1)), hosts, !enlist);
	else
		for (size_t i = 0; i < w->nhl; i++)
			hostlist_edit(&w->hl[i], hosts, true);
	return NULL;
}

static const struct {
	const char *name;
	int list;
	bool remove;
} directives[] = {
    {"welcomelist_from", WL_FROM, false},
    {"whitelist_from", WL_FROM, false},
    {"unwelcomelist_from", WL_FROM, true},
    {"unwhitelist_from", WL_FROM, true},
    {"blocklist_from", BL_FROM, false},
    {"blacklist_from", BL_FROM, false},
    {"unblocklist_from", BL_FROM, true},
    {"unblacklist_from", BL_FROM, true},
    {"welcomelist_to", WL_TO, false},
    {"whitelist_to", WL_TO, false},
    {"blocklist_to", BL_TO, false},
    {"blacklist_to", BL_TO, false},
    {"more_spam_to", MORE_SPAM_TO, false},
    {"all_spam_to", ALL_SPAM_TO, false},
    {"welcomelist_from_spf", WL_FROM_SPF, false},
    {"whitelist_from_spf", WL_FROM_SPF, false},
    {"def_welcomelist_from_spf", DEF_WL_FROM_SPF, false},
    {"def_whitelist_from_spf", DEF_WL_FROM_SPF, false},
    {"welcomelist_auth", WL_AUTH, false},
    {"whitelist_auth", WL_AUTH, false},
    {"def_welcomelist_auth", DEF_WL_AUTH, false},
    {"def_whitelist_auth", DEF_WL_AUTH, false},
    {"welcomelist_bounce_relays", BOUNCE_RELAYS, false},
    {"whitelist_bounce_relays", BOUNCE_RELAYS, false},
};

static void addrlist_add(struct addrlist *l, const char *s, size_t n)
{
	char *pat = rules_eval_lower_dup(s, n);
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xalloc_realloc(l->v, l->cap * sizeof(char *));
	}
	l->v[l->n++] = pat;
}

/* enlist_addrlist (NAME) addr...: a named list for check_from_in_list and friends. */
static const char *enlist_addrlist(struct rules_wlbl *w, const char *rest)
{
	if (*rest != '(')
		return "expected (LISTNAME) and addresses";
	const char *close = strchr(rest, ')');
	if (close == NULL || (close[1] != ' ' && close[1] != '\t'))
		return "expected (LISTNAME) and addresses";
	size_t nl = (size_t)(close - rest - 1);
	struct addrlist *l = NULL;
	for (size_t i = 0; i < w->nlists && l == NULL; i++)
		if (strlen(w->lists[i].name) == nl && strncmp(w->lists[i].name, rest + 1, nl) == 0)
			l = &w->lists[i];
	if (l == NULL) {
		w->lists = xalloc_realloc(w->lists, (w->nlists + 1) * sizeof(*w->lists));
		l = &w->lists[w->nlists++];
		*l = (struct addrlist){.name = xalloc_strndup(rest + 1, nl)};
	}
	const char *wd;
	size_t n;
	for (const char *p = close + 1; rules_eval_word(&p, &wd, &n);)
		addrlist_add(l, wd, n);
	return NULL;
}

/* (def_)welcomelist_from_rcvd addr domain: exactly two words, as SpamAssassin wants them. */
static const char *from_rcvd(struct rcvd_entry **list, size_t *n, size_t *cap, const char *rest)
{
	const char *a = rest + strspn(rest, " \t");
	size_t an = strcspn(a, " \t");
	const char *d = a + an + strspn(a + an, " \t");
	size_t dn = strcspn(d, " \t");
	if (an == 0 || dn == 0 || d[dn + strspn(d + dn, " \t")] != '\0')
		return "expected an address and the domain or [IP] of its relay";
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*list = xalloc_realloc(*list, *cap * sizeof(**list));
	}
	struct rcvd_entry *en = &(*list)[(*n)++];
	en->addr = rules_eval_lower_dup(a, an);
	en->domain = rules_eval_lower_dup(d, dn);
	return NULL;
}

/*
 * welcomelist_from_dkim addr [sdid] and its def_ and un- forms: one entry a
 * line; un... removes the entry written the same way from both lists.
 */
static const char *from_dkim(struct rules_wlbl *w, int l, bool remove, const char *rest)
{
	const char *a = rest + strspn(rest, " \t");
	size_t an = strcspn(a, " \t");
	const char *d = a + an + strspn(a + an, " \t");
	size_t dn = strcspn(d, " \t");
	if (an == 0 || d[dn + strspn(d + dn, " \t")] != '\0')
		return "expected an author address and an optional signing domain";
	char *addr = rules_eval_lower_dup(a, an), *sdid = rules_eval_lower_dup(d, dn);
	if (remove) {
		for (int k = 0; k < DKIM_N; k++)
			for (size_t i = 0; i < w->ndkim[k]; i++)
				if (strcmp(w->dkim[k][i].addr, addr) == 0 &&
				    strcmp(w->dkim[k][i].sdid, sdid) == 0) {
					free(w->dkim[k][i].addr);
					free(w->dkim[k][i].sdid);
					w->dkim[k][i--] = w->dkim[k][--w->ndkim[k]];
				}
		free(addr);
		free(sdid);
		return NULL;
	}
	if (w->ndkim[l] == w->capdkim[l]) {
		w->capdkim[l] = w->capdkim[l] ? w->capdkim[l] * 2 : 64;
		w->dkim[l] = xalloc_realloc(w->dkim[l], w->capdkim[l] * sizeof(*w->dkim[l]));
	}
	w->dkim[l][w->ndkim[l]++] = (struct dkim_entry){addr, sdid};
	return NULL;
}

/* adsp_override [@]domain [practice]: later lines win; the practice is discardable by default */
static const char *adsp_override(struct rules_wlbl *w, const char *rest)
{
	static const struct {
		const char *name;
		char c;
	} practices[] = {{"nxdomain", 'N'},    {"unknown", 'U'},    {"all", 'A'},
	                 {"discardable", 'D'}, {"custom_low", '1'}, {"custom_med", '2'},
	                 {"custom_high", '3'}};
	const char *a = rest + strspn(rest, " \t");
	if (*a == '@')
		a++;
	size_t an = strcspn(a, " \t");
	const char *pr = a + an + strspn(a + an, " \t");
	size_t pn = strcspn(pr, " \t");
	if (an == 0 ||
	    strspn(a, "*abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") < an ||
	    pr[pn + strspn(pr + pn, " \t")] != '\0')
		return "expected a domain and an optional signing practice";
	char c = 'D';
	if (pn > 0) {
		c = 0;
		for (size_t i = 0; i < sizeof(practices) / sizeof(practices[0]); i++)
			if (strlen(practices[i].name) == pn &&
			    strncasecmp(pr, practices[i].name, pn) == 0)
				c = practices[i].c;
		if (c == 0)
			return "the practice is one of nxdomain, unknown, all, discardable, "
			       "custom_low, "
			       "custom_med, custom_high";
	}
	char *d = rules_eval_lower_dup(a, an);
	for (size_t i = 0; i < w->nadsp; i++)
		if (strcmp(w->adsp[i].host, d) == 0) {
			w->adsp_practice[i] = c;
			free(d);
			return NULL;
		}
	if (w->nadsp == w->capadsp) {
		w->capadsp = w->capadsp ? w->capadsp * 2 : 64;
		w->adsp = xalloc_realloc(w->adsp, w->capadsp * sizeof(*w->adsp));
		w->adsp_practice = xalloc_realloc(w->adsp_practice, w->capadsp);
	}
	w->adsp[w->nadsp] = (struct host_entry){d, true};
	w->adsp_practice[w->nadsp++] = c;
	return NULL;
}

/*
 * DKIM's adsp_override lookup: domain a.b.c itself, then *.b.c, *.c and
 * *; the practice letter, or 0 when none is listed.
 */
char rules_wlbl_adsp_override(const rules_t *r, const char *domain)
{
	const struct rules_wlbl *w = r->wlbl;
	if (w == NULL || w->nadsp == 0)
		return 0;
	char key[300];
	for (const char *q = domain; q != NULL;) {
		if (q == domain)
			snprintf(key, sizeof(key), "%s", domain);
		else
			snprintf(key, sizeof(key), "*%s%s", *q ? "." : "", q);
		for (size_t i = 0; i < w->nadsp; i++)
			if (strcasecmp(w->adsp[i].host, key) == 0)
				return w->adsp_practice[i];
		if (*q == '\0')
			break;
		const char *dot = strchr(q, '.');
		q = dot ? dot + 1 : q + strlen(q);
	}
	return 0;
}

/* 1: handled (*err set when the line is wrong); 0: not a directive of this family. */
int rules_wlbl_directive(rules_t *r, const char *dir, const char *rest, const char **err)
{
	*err = NULL;
	if (strcmp(dir, "adsp_override") == 0) {
		*err = adsp_override(wlbl_of(r), rest);
		return 1;
	}
	if (strcmp(dir, "enlist_addrlist") == 0) {
		*err = enlist_addrlist(wlbl_of(r), rest);
		return 1;
	}
	if (strcmp(dir, "def_welcomelist_from_rcvd") == 0 ||
	    strcmp(dir, "def_whitelist_from_rcvd") == 0) {
		struct rules_wlbl *w = wlbl_of(r);
		*err = from_rcvd(&w->def, &w->ndef, &w->capdef, rest);
		return 1;
	}
	if (strcmp(dir, "welcomelist_from_rcvd") == 0 || strcmp(dir, "whitelist_from_rcvd") == 0) {
		struct rules_wlbl *w = wlbl_of(r);
		*err = from_rcvd(&w->rcvd, &w->nrcvd, &w->caprcvd, rest);
		return 1;
	}
	static const struct {
		const char *name;
		int list;
		bool remove;
	} dkim_dirs[] = {
	    {"welcomelist_from_dkim", DKIM_WL, false},
	    {"whitelist_from_dkim", DKIM_WL, false},
	    {"def_welcomelist_from_dkim", DKIM_DEF, false},
	    {"def_whitelist_from_dkim", DKIM_DEF, false},
	    {"unwelcomelist_from_dkim", DKIM_WL, true},
	    {"unwhitelist_from_dkim", DKIM_WL, true},
	};
	for (size_t i = 0; i < sizeof(dkim_dirs) / sizeof(dkim_dirs[0]); i++)
		if (strcmp(dir, dkim_dirs[i].name) == 0) {
			*err = from_dkim(wlbl_of(r), dkim_dirs[i].list, dkim_dirs[i].remove, rest);
			return 1;
		}
	int subj = strcmp(dir, "welcomelist_subject") == 0 || strcmp(dir, "whitelist_subject") == 0
	               ? SUBJ_WELCOME
	           : strcmp(dir, "blocklist_subject") == 0 || strcmp(dir, "blacklist_subject") == 0
	               ? SUBJ_BLOCK
	               : -1;
	if (subj >= 0) {
		/* the whole rest of the line is one string, spaces and all */
		size_t n = strlen(rest);
		while (n > 0 && isspace((unsigned char)rest[n - 1]))
			n--;
		if (n == 0)
			*err = "expected a string";
		else
			addrlist_add(&wlbl_of(r)->subj[subj], rest, n);
		return 1;
	}
	bool handled;
	*err = host_directive(r, dir, rest, &handled);
	if (handled)
		return 1;
	for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		if (strcmp(dir, directives[i].name) != 0)
			continue;
		if (r->wlbl == NULL)
			r->wlbl = xalloc_calloc(1, sizeof(*r->wlbl));
		struct rules_wlbl *w = r->wlbl;
		int l = directives[i].list;
		const char *wd;
		size_t n;
		for (const char *p = rest; rules_eval_word(&p, &wd, &n);) {
			char *pat = rules_eval_lower_dup(wd, n);
			if (directives[i].remove) {
				for (size_t k = 0; k < w->n[l]; k++)
					if (strcmp(w->v[l][k], pat) == 0) {
						free(w->v[l][k]);
						w->v[l][k] = w->v[l][--w->n[l]];
						break;
					}
				free(pat);
				continue;
			}
			if (w->n[l] == w->cap[l]) {
				w->cap[l] = w->cap[l] ? w->cap[l] * 2 : 16;
				w->v[l] = xalloc_realloc(w->v[l], w->cap[l] * sizeof(char *));
			}
			w->v[l][w->n[l]++] = pat;
		}
		return 1;
	}
	return 0;
}

void rules_wlbl_free(struct rules_wlbl *w)
{
	if (w == NULL)
		return;
	for (int l = 0; l < WLBL_N; l++) {
		for (size_t k = 0; k < w->n[l]; k++)
			free(w->v[l][k]);
		free(w->v[l]);
	}
	for (size_t i = 0; i < w->nhl; i++) {
		for (size_t k = 0; k < w->hl[i].n; k++)
			free(w->hl[i].h[k].host);
		free(w->hl[i].h);
		free(w->hl[i].name);
	}
	free(w->hl);
	for (size_t i = 0; i < w->nadsp; i++)
		free(w->adsp[i].host);
	free(w->adsp);
	free(w->adsp_practice);
	for (size_t i = 0; i < w->nlists; i++) {
		for (size_t k = 0; k < w->lists[i].n; k++)
			free(w->lists[i].v[k]);
		free(w->lists[i].v);
		free(w->lists[i].name);
	}
	free(w->lists);
	for (size_t i = 0; i < w->ndef; i++) {
		free(w->def[i].addr);
		free(w->def[i].domain);
	}
	free(w->def);
	for (size_t i = 0; i < w->nrcvd; i++) {
		free(w->rcvd[i].addr);
		free(w->rcvd[i].domain);
	}
	free(w->rcvd);
	for (int l = 0; l < DKIM_N; l++) {
		for (size_t i = 0; i < w->ndkim[l]; i++) {
			free(w->dkim[l][i].addr);
			free(w->dkim[l][i].sdid);
		}
		free(w->dkim[l]);
	}
	for (int l = 0; l < SUBJ_N; l++) {
		for (size_t k = 0; k < w->subj[l].n; k++)
			free(w->subj[l].v[k]);
		free(w->subj[l].v);
	}
	free(w);
}

/*
 * The pattern as an automaton: after each byte of s, which of its
 * positions a match can stand at (a '*' position stays, every other
 * advances one), so a mismatch never revisits a choice: at worst
 * len(pat) x len(s) steps, where trying every length of every star (as
 * a recursion does) grows as len(s) to the power of the stars ("*a*a*a*b"
 * against a long crafted From address or Subject took minutes). Most
 * patterns of a list are "*@domain" or "domain.*": an anchored one is
 * first checked for the literal before its first '*' and after its last
 * at the ends of s, where most fail.
 */
bool rules_eval_glob_within(const char *pat, const char *s, char star_stop, char any_stop,
                            unsigned flags)
{
	bool anywhere = (flags & RULES_GLOB_ANYWHERE) != 0;
	if (anywhere && *s == '\0')
		return false;
	size_t m = strlen(pat);
	if (!anywhere) {
		/* what comes before the first '*' must start s and what follows
		 * the last must end it: most patterns of a list fail there */
		const char *first = strchr(pat, '*'), *last = strrchr(pat, '*');
		size_t hn = first ? (size_t)(first - pat) : m, tn = last ? strlen(last + 1) : 0;
		size_t sn = strlen(s);
		if (first == NULL ? sn != m : hn + tn > sn)
			return false;
		for (size_t i = 0; i < hn + tn; i++) {
			char pc = i < hn ? pat[i] : last[1 + i - hn];
			unsigned char b = (unsigned char)(i < hn ? s[i] : s[sn - tn + i - hn]);
			if (pc == '?'
			        ? any_stop != '\0' && b == (unsigned char)any_stop
			        : (unsigned char)pc !=
			              ((flags & RULES_GLOB_FOLD) ? (unsigned char)tolower(b) : b))
				return false;
		}
		if (first == NULL)
			return true;
	}
	uint8_t small[2][256];
	size_t stride = m < sizeof(small[0]) ? sizeof(small[0]) : m + 1;
	uint8_t *buf = stride == sizeof(small[0]) ? &small[0][0] : xalloc_calloc(2, stride);
	uint8_t *at = buf, *next = buf + stride;
	memset(at, 0, m + 1);
	bool found = false, alive = true;
	for (const char *c = s;; c++) {
		/* a match may start here; a '*' may match nothing */
		if (anywhere || c == s)
			at[0] = 1;
		for (size_t i = 0; i < m; i++)
			if (at[i] && pat[i] == '*')
				at[i + 1] = 1;
		if (at[m] && (anywhere || *c == '\0')) {
			found = true;
			break;
		}
		if (*c == '\0' || !alive)
			break;
		unsigned char b = (unsigned char)*c;
		unsigned char f = (flags & RULES_GLOB_FOLD) ? (unsigned char)tolower(b) : b;
		memset(next, 0, m + 1);
		alive = false;
		for (size_t i = 0; i < m; i++) {
			if (!at[i])
				continue;
			if (pat[i] == '*') {
				if (b != (unsigned char)star_stop || star_stop == '\0')
					next[i] = alive = 1;
			} else if (pat[i] == '?' ? b != (unsigned char)any_stop || any_stop == '\0'
			                         : (unsigned char)pat[i] == f) {
				next[i + 1] = alive = 1;
			}
		}
		uint8_t *t = at;
		at = next;
		next = t;
		alive |= anywhere;
	}
	if (buf != &small[0][0])
		free(buf);
	return found;
}

bool rules_eval_glob(const char *pat, const char *s)
{
	return rules_eval_glob_within(pat, s, '\0', '\0', RULES_GLOB_FOLD);
}

static bool listed(const struct rules_wlbl *w, int l, const char *addr)
{
	for (size_t k = 0; w && k < w->n[l]; k++)
		if (rules_eval_glob(w->v[l][k], addr))
			return true;
	return false;
}

bool rules_wlbl_have_bounce_relays(const rules_t *r)
{
	return r->wlbl != NULL && r->wlbl->n[BOUNCE_RELAYS] > 0;
}

bool rules_wlbl_bounce_relay(const rules_t *r, const char *host, size_t n)
{
	if (!rules_wlbl_have_bounce_relays(r) || n > 1024)
		return false;
	char buf[1025];
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)host[i]);
	buf[n] = '\0';
	return listed(r->wlbl, BOUNCE_RELAYS, buf);
}

static bool any_listed(struct rules_evalenv *e, int l, const char *const *fields, size_t nf)
{
	for (size_t f = 0; f < nf; f++) {
		const char *v;
		for (size_t pos = 0; (v = msg_header_next(e->m, fields[f], &pos)) != NULL;) {
			const char **list;
			size_t n = rules_eval_addrs(e->a, mime_decode_header(e->a, v), &list);
			for (size_t i = 0; i < n; i++)
				if (listed(e->r->wlbl, l, list[i]))
					return true;
		}
	}
	return false;
}

static bool glob_any(char *const *v, size_t nv, const char *addr)
{
	for (size_t k = 0; k < nv; k++)
		if (rules_eval_glob(v[k], addr))
			return true;
	return false;
}

static bool from_listed(struct rules_evalenv *e, int l)
{
	if (e->r->wlbl == NULL || e->r->wlbl->n[l] == 0)
		return false;
	const char **list;
	size_t n = rules_eval_all_from_addrs(e, &list);
	for (size_t i = 0; i < n; i++)
		if (glob_any(e->r->wlbl->v[l], e->r->wlbl->n[l], list[i]))
			return true;
	return false;
}

/* SpamAssassin's all_to_addrs, plus the SMTP recipients when Sift has them. */
static bool to_listed(struct rules_evalenv *e, int l)
{
	if (e->r->wlbl == NULL || e->r->wlbl->n[l] == 0)
		return false;
	static const char *const fields[] = {"To",
	                                     "Apparently-To",
	                                     "Delivered-To",
	                                     "Envelope-Recipients",
	                                     "Apparently-Resent-To",
	                                     "X-Envelope-To",
	                                     "Envelope-To",
	                                     "X-Delivered-To",
	                                     "X-Original-To",
	                                     "X-Rcpt-To",
	                                     "X-Real-To",
	                                     "Cc",
	                                     "Resent-To",
	                                     "Resent-Cc"};
	if (any_listed(e, l, fields, sizeof(fields) / sizeof(fields[0])))
		return true;
	for (size_t i = 0; i < msg_rcpt_count(e->m); i++) {
		const char **list;
		if (rules_eval_addrs(e->a, msg_rcpt(e->m, i), &list) > 0 &&
		    listed(e->r->wlbl, l, list[0]))
			return true;
	}
	return false;
}

#define FROM_TEST(fn, list)                                                                        \
	static long fn(struct rules_evalenv *e, const struct rule *ru)                             \
	{                                                                                          \
		(void)ru;                                                                          \
		return from_listed(e, list);                                                       \
	}
#define TO_TEST(fn, list)                                                                          \
	static long fn(struct rules_evalenv *e, const struct rule *ru)                             \
	{                                                                                          \
		(void)ru;                                                                          \
		return to_listed(e, list);                                                         \
	}

FROM_TEST(from_in_blocklist, BL_FROM)
TO_TEST(to_in_welcomelist, WL_TO)
TO_TEST(to_in_blocklist, BL_TO)
TO_TEST(to_in_more_spam, MORE_SPAM_TO)
TO_TEST(to_in_all_spam, ALL_SPAM_TO)

/* The host of a URI, lower-case, in buf ("" for mailto: and when there is none). */
static void uri_host(const char *u, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (strncasecmp(u, "mailto:", 7) == 0)
		return;
	const char *p = strstr(u, "://");
	p = p ? p + 3 : u;
	size_t n = strcspn(p, "/?#");
	const char *at = memchr(p, '@', n);
	if (at != NULL) {
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (n > 0 && p[0] == '[') {
		const char *close = memchr(p, ']', n);
		if (close)
			n = (size_t)(close + 1 - p);
	} else {
		const char *colon = memchr(p, ':', n);
		if (colon)
			n = (size_t)(colon - p);
	}
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)p[i]);
	buf[n] = '\0';
}

/*
 * A host against a uri host list: the host, then each parent domain, the
 * most specific entry deciding ("!host" is an exception to a listed
 * parent); an address literal only as itself, without its brackets.
 * 1 listed, 0 not (or an exception).
 */
static bool host_in_list(const struct hostlist *l, char *host)
{
	const char *key0 = host;
	bool literal = rules_eval_is_ipv4(host);
	if (host[0] == '[') {
		host[strcspn(host, "]")] = '\0';
		key0 = host + 1;
		literal = true;
	}
	for (const char *q = key0; q != NULL;) {
		bool found;
		size_t k = hostlist_find(l, q, &found);
		if (found)
			return l->h[k].listed;
		if (literal)
			break;
		q = strchr(q, '.');
		if (q != NULL)
			q++;
	}
	return false;
}

/*
 * SpamAssassin's is_fqdn_valid for a lower-case ASCII host: two labels or
 * more, each 1 to 63 of [a-z0-9_-], no '-' at either end, no '_' in the
 * last two.
 */
static bool fqdn_valid(const char *host)
{
	size_t n = strlen(host);
	while (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	size_t labels = 1;
	for (size_t i = 0; i < n; i++)
		labels += host[i] == '.';
	if (labels < 2)
		return false;
	for (size_t i = 0, k = labels; i < n; k--) {
		size_t len = strcspn(host + i, ".");
		if (i + len > n)
			len = n - i;
		const char *lab = host + i;
		if (len < 1 || len > 63 || lab[0] == '-' || lab[len - 1] == '-' ||
		    strspn(lab, "abcdefghijklmnopqrstuvwxyz0123456789_-") < len ||
		    (k <= 2 && memchr(lab, '_', len) != NULL))
			return false;
		i += len + 1;
	}
	return true;
}

/*
 * The host names written in the text without a scheme ("Benefits.Click",
 * "shop.example.top/x"), which SpamAssassin's URI list has and the MIME
 * module's links do not: its schemeless pattern (PerMsgStatus.pm's
 * _tbirdurire), the links with a scheme, www. and mail addresses skipped
 * whole, and a host counted only under a known top-level domain.
 */
struct schemeless {
	const char **hosts; /* lower-case, valid host names under a known TLD */
	size_t n;
};

/* The end delimiters of SpamAssassin's URI pattern, where a match stops. */
static bool uri_end_delim(unsigned char c)
{
	return strchr("><\"`}]{[|", c) != NULL || isspace(c) || c == 0x1b || c == 0xa0;
}

/* [a-z\d-] of the pattern below (caseless, bytes) */
static bool label_byte(unsigned char c)
{
	return isascii(c) && (isalnum(c) || c == '-');
}

/*
 * Whether text[i] is a dot a schemeless host name can hold: after one of
 * [a-z\d._-] and before two of [a-z\d-] (the pattern's "\.[a-z\d-]{2,63}").
 * Every host the pattern finds has one; most words have none.
 */
static bool host_dot_at(const char *t, size_t n, size_t i)
{
	if (t[i] != '.' || i == 0 || i + 2 >= n)
		return false;
	unsigned char b = (unsigned char)t[i - 1];
	return (label_byte(b) || b == '.' || b == '_') && label_byte((unsigned char)t[i + 1]) &&
	       label_byte((unsigned char)t[i + 2]);
}

static const struct schemeless *schemeless_hosts(struct rules_evalenv *e)
{
	struct schemeless *c = e->cache[RULES_EVAL_CACHE_SCHEMELESS];
	if (c != NULL)
		return c;
	c = arena_zalloc(e->a, sizeof(*c));
	e->cache[RULES_EVAL_CACHE_SCHEMELESS] = c;
#define END     "><\"`}\\]{[|\\s\\x1b\\xa0"
#define ENDMAIL END ",('\\x80-\\xff"
	static struct rules_eval_re re = {
	    .pattern =
	        "(?:\\b|(?<=[><\"'`,{[(|\\s\\x1b\\xa0]))"
	        "(?:(?:(?:https?|ftp)://|(?:www\\d{0,2}|ftp)\\.)[^" END "]{1,2048}(?=[" END "]|\\z)"
	        "|(?:mailto:[^" ENDMAIL "]{1,2048}|[^" ENDMAIL "@]{1,251}@[^" ENDMAIL
	        "]{1,251})(?=[" ENDMAIL "]|\\z))(*SKIP)(*FAIL)"
	        "|(?:^|(?<=[!\"#$&'()*+,/:;<=>?@[\\\\\\]^`{|}~\\s\\x1b\\xa0]))"
	        "([a-z\\d][a-z\\d._-]{0,251}\\.[a-z\\d-]{2,63})\\.?(?::\\d{1,5})?"
	        "(?:/[^" END "]{1,2048})?(?=[" END "]|\\z)",
	    .options = PCRE2_CASELESS};
#undef END
#undef ENDMAIL
	size_t n = 0, cap = 0;
	const char *text = e->mi ? mime_body(e->mi, &n) : NULL;
	/*
	 * The pattern runs only over the runs of text between end delimiters
	 * that hold a host's dot (host_dot_at): tried at every word of a long
	 * body it was the costliest of the eval tests on large messages. What
	 * it matches or skips never spans an end delimiter, so a run's start is
	 * a point where a scan of the whole text starts afresh too, and
	 * matching within the run (the text cut at its end, where the pattern's
	 * closing lookahead holds either way) finds what that scan finds there.
	 */
	size_t from = 0, start, len;
	while (text != NULL && from < n) {
		const char *p = text + from;
		while ((p = memchr(p, '.', (size_t)(text + n - p))) != NULL &&
		       !host_dot_at(text, n, (size_t)(p - text)))
			p++;
		if (p == NULL)
			break;
		size_t dot = (size_t)(p - text);
		size_t run = dot, end = dot;
		while (run > from && !uri_end_delim((unsigned char)text[run - 1]))
			run--;
		while (end < n && !uri_end_delim((unsigned char)text[end]))
			end++;
		if (!rules_eval_re_find(&re, text, end, run, &start, &len)) {
			from = end;
			continue;
		}
		/* the match goes on over its port and path to the next end delimiter */
		from = start + len;
		while (from < n && !uri_end_delim((unsigned char)text[from]))
			from++;
		if (len >= 256)
			continue;
		char *host = arena_strndup(e->a, text + start, len);
		for (char *q = host; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		if (!fqdn_valid(host) || !rules_eval_domain_valid(host))
			continue;
		if (c->n == cap) {
			cap = cap ? cap * 2 : 16;
			const char **nv = arena_alloc(e->a, cap * sizeof(*nv));
			if (c->n > 0)
				memcpy(nv, c->hosts, c->n * sizeof(*nv));
			c->hosts = nv;
		}
		c->hosts[c->n++] = host;
	}
	return c;
}

static bool schemeless_listed(struct rules_evalenv *e, const struct hostlist *l)
{
	const struct schemeless *c = schemeless_hosts(e);
	for (size_t i = 0; i < c->n; i++) {
		char host[256];
		snprintf(host, sizeof(host), "%s", c->hosts[i]);
		if (host_in_list(l, host))
			return true;
	}
	return false;
}

/*
 * SpamAssassin's check_uri_host_listed(NAME): the hosts of the message's
 * URIs (not mailto:) in list NAME.
 */
static bool host_listed(struct rules_evalenv *e, const char *name)
{
	const struct rules_wlbl *w = e->r->wlbl;
	const struct hostlist *l = NULL;
	for (size_t i = 0; w != NULL && i < w->nhl && l == NULL; i++)
		if (strcmp(w->hl[i].name, name) == 0)
			l = &w->hl[i];
	if (l == NULL || l->n == 0 || e->mi == NULL)
		return false;
	for (size_t i = 0; i < mime_uri_count(e->mi); i++) {
		char host[256];
		uri_host(mime_uri(e->mi, i), host, sizeof(host));
		if (host[0] != '\0' && host_in_list(l, host))
			return true;
	}
	return schemeless_listed(e, l);
}

static long uri_host_in_blocklist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return host_listed(e, "BLOCK");
}

static long uri_host_in_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return host_listed(e, "WELCOME");
}

static long uri_host_listed(struct rules_evalenv *e, const struct rule *ru)
{
	return host_listed(e, ru->eargs[0]);
}

/* The registered domain of a host, lower case; the host itself when it has none. */
static const char *reg_domain(const char *host, char *buf, size_t cap)
{
	const char *d = dns_registered_domain(host, buf, cap);
	if (d != NULL)
		return d;
	snprintf(buf, cap, "%s", host);
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return buf;
}

/*
 * check_mailfrom_matches_rcvd: the envelope sender's registered domain is
 * that of the first untrusted relay's rDNS (of any trusted relay's when
 * every relay is trusted): mail that comes from its sender's own servers.
 */
static long mailfrom_matches_rcvd(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *sender = rules_eval_envelope_from(e);
	const char *at = sender ? strrchr(sender, '@') : NULL;
	if (at == NULL || strchr(at + 1, '.') == NULL)
		return 0;
	char sd[256], rd[256];
	reg_domain(at + 1, sd, sizeof(sd));
	rules_eval_relays(e);
	const struct rules_relay *v = e->nuntrusted ? e->untrusted : e->trusted;
	size_t n = e->nuntrusted ? 1 : e->ntrusted;
	for (size_t i = 0; i < n; i++) {
		if (v[i].rdns == NULL || v[i].rdns[0] == '\0')
			continue;
		if (strcmp(sd, reg_domain(v[i].rdns, rd, sizeof(rd))) == 0)
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- named lists */

static const struct addrlist *named_list(const struct rules_wlbl *w, const char *name)
{
	for (size_t i = 0; w != NULL && i < w->nlists; i++)
		if (strcmp(w->lists[i].name, name) == 0)
			return &w->lists[i];
	return NULL;
}

/* check_from_in_list(NAME): a sender address in enlist_addrlist's list NAME. */
static long from_in_list(struct rules_evalenv *e, const struct rule *ru)
{
	const struct addrlist *l = named_list(e->r->wlbl, ru->eargs[0]);
	if (l == NULL || l->n == 0)
		return 0; /* an unknown list never matches, as in SpamAssassin */
	const char **list;
	size_t n = rules_eval_all_from_addrs(e, &list);
	for (size_t i = 0; i < n; i++)
		if (glob_any(l->v, l->n, list[i]))
			return 1;
	return 0;
}

/* check_replyto_in_list(NAME): Reply-To's first address in list NAME. */
static long replyto_in_list(struct rules_evalenv *e, const struct rule *ru)
{
	const struct addrlist *l = named_list(e->r->wlbl, ru->eargs[0]);
	const char *v = rules_eval_header_raw(e, "Reply-To");
	const char **list;
	if (l == NULL || v == NULL || rules_eval_addrs(e->a, v, &list) == 0)
		return 0;
	return glob_any(l->v, l->n, list[0]);
}

/* ---------------------------------------------------------------- def_welcomelist_from_rcvd */

/* addr inside net, "a.b.c.d/len" or an IPv6 address with an optional "/len". */
static bool in_cidr(const char *net, const char *addr)
{
	char host[64];
	const char *slash = strchr(net, '/');
	size_t hl = slash ? (size_t)(slash - net) : strlen(net);
	if (hl >= sizeof(host))
		return false;
	memcpy(host, net, hl);
	host[hl] = '\0';
	unsigned char n[16], a[16];
	int fam = strchr(host, ':') ? AF_INET6 : AF_INET;
	size_t bytes = fam == AF_INET6 ? 16 : 4;
	if (inet_pton(fam, host, n) != 1 || inet_pton(fam, addr, a) != 1)
		return false;
	long len = slash ? strtol(slash + 1, NULL, 10) : (long)bytes * 8;
	if (len < 0 || len > (long)bytes * 8)
		return false;
	for (size_t i = 0; i < bytes && len > 0; i++, len -= 8) {
		unsigned char mask = len >= 8 ? 0xff : (unsigned char)(0xff << (8 - len));
		if ((n[i] & mask) != (a[i] & mask))
			return false;
	}
	return true;
}

/* /^\d+\.\d+\.\d+\.\d+$/ */
static bool four_numbers(const char *s)
{
	for (int part = 0; part < 4; part++) {
		if (part > 0 && *s++ != '.')
			return false;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

/*
 * SpamAssassin's relay test of welcomelist_from_rcvd: "[IP]" the relay's
 * address, "[10.1]" a classful subnet, "[net/len]" or an IPv6 "[net]" a
 * range; else a domain the relay's rDNS ends in.
 */
static bool relay_matches(const struct rules_relay *r, const char *domain)
{
	const char *close = domain[0] == '[' ? strchr(domain, ']') : NULL;
	if (close != NULL &&
	    (close[1] == '\0' ||
	     (close[1] == '/' && close[2] != '\0' &&
	      strspn(close + 2, "0123456789") == strlen(close + 2) && strlen(close + 2) <= 3))) {
		const char *ip = r->ip ? r->ip : "";
		if (*ip == '\0')
			return false;
		char wl[80];
		snprintf(wl, sizeof(wl), "%.*s%s", (int)(close - domain - 1), domain + 1,
		         close + 1);
		if (four_numbers(wl))
			return strcmp(wl, ip) == 0;
		if (wl[0] != '\0' && strspn(wl, "0123456789.") == strlen(wl)) {
			size_t n = strlen(wl);
			while (n > 0 && wl[n - 1] == '.')
				n--;
			return strncmp(ip, wl, n) == 0 && ip[n] == '.';
		}
		return in_cidr(wl, ip);
	}
	const char *rdns = r->rdns ? r->rdns : "";
	size_t rl = strlen(rdns), dl = strlen(domain);
	return rl >= dl && strcasecmp(rdns + rl - dl, domain) == 0 &&
	       (rl == dl || rdns[rl - dl - 1] == '.');
}

/*
 * A sender address listed with (def_)welcomelist_from_rcvd, the mail
 * coming through the relay named with it: the first untrusted relay, or
 * any trusted one when none is untrusted.
 */
static bool rcvd_listed(struct rules_evalenv *e, const struct rcvd_entry *v, size_t nv)
{
	if (nv == 0)
		return false;
	rules_eval_relays(e);
	const struct rules_relay *relays = e->nuntrusted ? e->untrusted : e->trusted;
	size_t nrelays = e->nuntrusted ? 1 : e->ntrusted;
	if (nrelays == 0)
		return 0;
	const char **list;
	size_t n = rules_eval_all_from_addrs(e, &list);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < nv; k++) {
			if (!rules_eval_glob(v[k].addr, list[i]))
				continue;
			for (size_t j = 0; j < nrelays; j++)
				if (relay_matches(&relays[j], v[k].domain))
					return true;
		}
	return false;
}

/* check_from_in_default_welcomelist: def_welcomelist_from_rcvd */
static long from_in_default_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const struct rules_wlbl *w = e->r->wlbl;
	return w != NULL && rcvd_listed(e, w->def, w->ndef);
}

/* check_from_in_welcomelist: welcomelist_from, or welcomelist_from_rcvd with its relay */
static long from_in_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const struct rules_wlbl *w = e->r->wlbl;
	return w != NULL && (from_listed(e, WL_FROM) || rcvd_listed(e, w->rcvd, w->nrcvd));
}

/* ---------------------------------------------------------------- SPF and DKIM welcomelists */

/*
 * SPF's check_for_(def_)spf_welcomelist_from: the envelope sender is in
 * list l or in its welcomelist_auth list al, and auth found SPF pass.
 */
static bool spf_welcomelisted(struct rules_evalenv *e, int l, int al)
{
	const struct rules_wlbl *w = e->r->wlbl;
	bool pass = false;
	if (w == NULL || (w->n[l] == 0 && w->n[al] == 0) || e->h == NULL ||
	    !auth_eval(e->h, "check_for_spf_pass", &pass) || !pass)
		return false;
	const char *env = rules_eval_envelope_from(e);
	if (env == NULL || *env == '\0')
		return false;
	char *lc = arena_strdup(e->a, env);
	for (char *q = lc; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return glob_any(w->v[l], w->n[l], lc) || glob_any(w->v[al], w->n[al], lc);
}

static long spf_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return spf_welcomelisted(e, WL_FROM_SPF, WL_AUTH);
}

static long def_spf_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return spf_welcomelisted(e, DEF_WL_FROM_SPF, DEF_WL_AUTH);
}

/*
 * Whether a signing domain acceptable by a welcomelist_from_dkim entry
 * verified: "" the author's own domain, "*.dom" or ".dom" a domain below
 * dom, anything else that domain (a full address's local part ignored).
 */
static bool sdid_valid(const hits_t *h, const char *sdid, const char *author_domain)
{
	if (*sdid == '\0')
		return *author_domain != '\0' && auth_dkim_valid_sdid(h, author_domain, false);
	const char *at = strrchr(sdid, '@');
	if (at != NULL)
		sdid = at + 1;
	if (sdid[0] == '*' && sdid[1] == '.')
		return auth_dkim_valid_sdid(h, sdid + 2, true);
	if (sdid[0] == '.')
		return auth_dkim_valid_sdid(h, sdid + 1, true);
	return *sdid != '\0' && auth_dkim_valid_sdid(h, sdid, false);
}

/*
 * DKIM's check_for_(def_)dkim_welcomelist_from: the author (From's first
 * address) matches an entry of list l whose signing domain verified, or
 * one of welcomelist_auth's list al with a valid author domain signature.
 * The signing domain is the signature's d=; SpamAssassin takes the i=
 * identity's domain when a signature has one (most have none, or d=).
 */
static bool dkim_welcomelisted(struct rules_evalenv *e, int l, int al)
{
	const struct rules_wlbl *w = e->r->wlbl;
	if (w == NULL || (w->ndkim[l] == 0 && w->n[al] == 0) || e->h == NULL)
		return false;
	const char *from = rules_eval_header_raw(e, "From");
	const char **list;
	if (from == NULL || rules_eval_addrs(e->a, mime_decode_header(e->a, from), &list) == 0)
		return false;
	char *author = arena_strdup(e->a, list[0]);
	for (char *q = author; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	const char *at = strrchr(author, '@');
	const char *adom = at ? at + 1 : "";
	for (size_t i = 0; i < w->ndkim[l]; i++)
		if (rules_eval_glob(w->dkim[l][i].addr, author) &&
		    sdid_valid(e->h, w->dkim[l][i].sdid, adom))
			return true;
	return glob_any(w->v[al], w->n[al], author) && sdid_valid(e->h, "", adom);
}

static long dkim_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return dkim_welcomelisted(e, DKIM_WL, WL_AUTH);
}

static long def_dkim_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return dkim_welcomelisted(e, DKIM_DEF, DEF_WL_AUTH);
}

/*
 * DKIM's check_dkim_valid_envelopefrom: a valid signature by the envelope
 * sender's domain.
 */
static long dkim_valid_envelopefrom(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	const char *env = rules_eval_envelope_from(e);
	const char *at = env ? strchr(env, '@') : NULL;
	if (at == NULL || at[1] == '\0' || e->h == NULL)
		return 0;
	size_t n = strcspn(at + 1, " \t\r\n");
	return auth_dkim_valid_sdid(e->h, arena_strndup(e->a, at + 1, n), false);
}

/* ---------------------------------------------------------------- WelcomeListSubject */

static bool subject_listed(struct rules_evalenv *e, int l)
{
	const struct rules_wlbl *w = e->r->wlbl;
	const char *subject = rules_eval_header(e, "Subject");
	if (w == NULL || w->subj[l].n == 0 || subject == NULL)
		return false;
	/* anywhere in the subject (SpamAssassin does not anchor these); * and
	 * ? stay within a line */
	for (size_t k = 0; k < w->subj[l].n; k++)
		if (rules_eval_glob_within(w->subj[l].v[k], subject, '\n', '\n',
		                           RULES_GLOB_FOLD | RULES_GLOB_ANYWHERE))
			return true;
	return false;
}

static long subject_in_welcomelist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return subject_listed(e, SUBJ_WELCOME);
}

static long subject_in_blocklist(struct rules_evalenv *e, const struct rule *ru)
{
	(void)ru;
	return subject_listed(e, SUBJ_BLOCK);
}

const struct rules_evaldef rules_eval_wlbl_defs[] = {
    {"check_mailfrom_matches_rcvd", mailfrom_matches_rcvd, 0, 0, NULL},
    {"check_uri_host_in_blocklist", uri_host_in_blocklist, 0, 0, NULL},
    {"check_uri_host_in_blacklist", uri_host_in_blocklist, 0, 0, NULL},
    {"check_uri_host_in_welcomelist", uri_host_in_welcomelist, 0, 0, NULL},
    {"check_uri_host_in_whitelist", uri_host_in_welcomelist, 0, 0, NULL},
    {"check_uri_host_listed", uri_host_listed, 1, 1, NULL},
    {"check_from_in_welcomelist", from_in_welcomelist, 0, 0, NULL},
    {"check_from_in_whitelist", from_in_welcomelist, 0, 0, NULL},
    {"check_from_in_blocklist", from_in_blocklist, 0, 0, NULL},
    {"check_from_in_blacklist", from_in_blocklist, 0, 0, NULL},
    {"check_to_in_welcomelist", to_in_welcomelist, 0, 0, NULL},
    {"check_to_in_whitelist", to_in_welcomelist, 0, 0, NULL},
    {"check_to_in_blocklist", to_in_blocklist, 0, 0, NULL},
    {"check_to_in_blacklist", to_in_blocklist, 0, 0, NULL},
    {"check_to_in_more_spam", to_in_more_spam, 0, 0, NULL},
    {"check_to_in_all_spam", to_in_all_spam, 0, 0, NULL},
    {"check_from_in_list", from_in_list, 1, 1, NULL},
    {"check_replyto_in_list", replyto_in_list, 1, 1, NULL},
    {"check_from_in_default_welcomelist", from_in_default_welcomelist, 0, 0, NULL},
    {"check_from_in_default_whitelist", from_in_default_welcomelist, 0, 0, NULL},
    {"check_subject_in_welcomelist", subject_in_welcomelist, 0, 0, NULL},
    {"check_subject_in_whitelist", subject_in_welcomelist, 0, 0, NULL},
    {"check_subject_in_blocklist", subject_in_blocklist, 0, 0, NULL},
    {"check_subject_in_blacklist", subject_in_blocklist, 0, 0, NULL},
    {"check_for_spf_welcomelist_from", spf_welcomelist, 0, 0, NULL},
    {"check_for_spf_whitelist_from", spf_welcomelist, 0, 0, NULL},
    {"check_for_def_spf_welcomelist_from", def_spf_welcomelist, 0, 0, NULL},
    {"check_for_def_spf_whitelist_from", def_spf_welcomelist, 0, 0, NULL},
    {"check_for_dkim_welcomelist_from", dkim_welcomelist, 0, 0, NULL},
    {"check_for_dkim_whitelist_from", dkim_welcomelist, 0, 0, NULL},
    {"check_for_def_dkim_welcomelist_from", def_dkim_welcomelist, 0, 0, NULL},
    {"check_for_def_dkim_whitelist_from", def_dkim_welcomelist, 0, 0, NULL},
    {"check_dkim_valid_envelopefrom", dkim_valid_envelopefrom, 0, 0, NULL},
    {NULL, NULL, 0, 0, NULL},
};
