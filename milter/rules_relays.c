/*
 * rules_relays.c - SpamAssassin's X-Spam-Relays-* pseudo-fields: the
 * Received chain parsed into "[ ip=... rdns=... helo=... by=... ]"
 * entries, newest first, split at the trust boundary. About a hundred of
 * SpamAssassin's rules (RDNS_NONE, the dynamic-rDNS family...) read them.
 *
 * Trust is inferred as SpamAssassin does without trusted_networks: relays
 * at the top of the chain whose sending address is private (loopback,
 * RFC 1918, link-local) or that authenticated are trusted; the first
 * public, unauthenticated one and everything below it is untrusted (and,
 * with nothing configured, internal equals trusted, external untrusted).
 *
 * A Received field is read against a table of MTA forms (sendmail,
 * Postfix, qmail, exim, Exchange, CommuniGate, Domino, webmailers...),
 * tried in order, the first that matches giving the relay. The forms and
 * their order follow SpamAssassin's parser (parse_received_line), so that
 * the rules written against it see the same relays: the same ip, rdns,
 * helo, by, ident, envfrom, id and auth, the same fields ignored on
 * purpose (local submissions, "invoked by uid", mail fetchers' markers)
 * and the same fields it cannot read, which stay out of the list but are
 * counted (UNPARSEABLE_RELAY). contrib/sa-received.sh measures the
 * agreement over a corpus.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rules_int.h"

#define RELAY_TOKEN_BYTES 256
#define RELAYS_MAX        32     /* Received fields read; more are a loop or an attack */
#define FIELD_BYTES       4096   /* of one field, after unfolding; the rest is not read */
#define MATCH_LIMIT       200000 /* backtracking steps per pattern: bounded work on hostile input */

struct relay {
	char ip[64], rdns[RELAY_TOKEN_BYTES], helo[RELAY_TOKEN_BYTES], by[RELAY_TOKEN_BYTES];
	char ident[RELAY_TOKEN_BYTES], id[RELAY_TOKEN_BYTES], auth[RELAY_TOKEN_BYTES];
	char envfrom[RELAY_TOKEN_BYTES];
	/* the MTA's form shows it asked for reverse DNS: an empty rdns means there is none */
	bool looked_up;
	/* a qmail-scanner line: its envfrom belongs to the relay in the next (older) field */
	bool qms;
};

/*
 * An address as SpamAssassin's IP_ADDRESS matches it: a dotted quad, or
 * IPv6 with "::" or all 8 groups; LH is its LOCALHOST.
 */
#define OCTET "(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)"
#define QUAD  OCTET "\\." OCTET "\\." OCTET "\\." OCTET "\\b"
#define IPV4  "\\b(?<!:)" QUAD
#define IP                                                                                         \
	"(?:" IPV4 "|(?i:(?:IPv6:|(?<![a-f0-9:]))(?=[a-f0-9:.]*::|(?:[a-f0-9]{1,4}:){7})"          \
	"(?:[a-f0-9]{0,4}:){2,7}(?:" QUAD "|[a-f0-9]{1,4})?(?![a-f0-9:])))"
#define LH                                                                                         \
	"(?i:localhost(?:\\.localdomain)?|\\b(?<!:)127\\.0\\.0\\.1\\b|(?:IPv6:)?(?<![a-f0-9:])"    \
	"(?:0{0,4}:){2,7}(?:ffff:127\\.0\\.0\\.1|0{0,3}1)(?![a-f0-9:.]))"

/* Which part of the field a form reads: after "from ", "(from " or simta's "FROM ". */
enum { SEC_FROM, SEC_PFROM, SEC_UFROM };

/*
 * Some forms apply only to a field that names its MTA (" SMTPSVC",
 * "Exim"...): the first such name found picks one group, and the forms of
 * the other groups are not tried. Forms of GRP_ANY always are.
 */
enum {
	GRP_ANY,
	GRP_SMTPSVC,
	GRP_MSSMTP,
	GRP_XMAIL,
	GRP_ECELERITY,
	GRP_EXIM,
	GRP_POSTFIX,
	GRP_SCALIX,
	GRP_DOMINO,
	GRP_N
};
static const char *const grp_guard[GRP_N] = {
    [GRP_SMTPSVC] = " SMTPSVC",
    [GRP_MSSMTP] = " with (?:Microsoft SMTP Server|mapi id) (?:\\([^\\)]+\\) "
                   ")?\\d+\\.\\d+\\.\\d+\\.\\d+(?:$| )",
    [GRP_XMAIL] = "\\[XMail ",
    [GRP_ECELERITY] = "\\(ecelerity\\b",
    [GRP_EXIM] = "Exim",
    [GRP_POSTFIX] = " \\(Postfix\\) with",
    [GRP_SCALIX] = "\\(Scalix SMTP Relay",
    [GRP_DOMINO] = " \\(Lotus Domino ",
};

enum {
	ACT_RELAY,      /* a handover: the groups give the relay */
	ACT_IGNORE,     /* no network handover worth a relay (local submission...) */
	ACT_FETCHER,    /* a mail fetcher's marker: ignored, and the trusted relays start again */
	ACT_EXIM_LOOSE, /* exim's odd forms: pieces picked one by one */
};

enum {
	F_LOOKED = 1 << 0,       /* the MTA always looks up rDNS: none written means none exists */
	F_HELO_IS_RDNS = 1 << 1, /* the MTA omits the HELO when it equals the rDNS */
	F_IDENT_RDNS = 1 << 2,   /* sendmail writes "IDENT:user@rdns" or "user@rdns" */
	F_IDENT_AT = 1 << 3,     /* the ident group ends in '@' */
	F_SOFTDNSERR = 1 << 4,   /* courier's "softdnserr" rdns: its lookup failed */
	F_QMAIL = 1 << 5,        /* tcpserver's rDNS: "unknown" if none or not asked */
	F_OBTUSE = 1 << 6,       /* "UNKNOWN" rdns: no lookup */
	F_UNVERIFIED = 1 << 7,   /* "unverified" rdns: none */
	F_NO_ID = 1 << 8,        /* the "id" is the server's version */
	F_NO_BY = 1 << 9,        /* a synthetic field without a receiving host */
	F_XMAIL = 1 << 10,       /* id and envelope sender in <...> */
	F_QMS = 1 << 11,         /* qmail-scanner: hands its envelope sender to the next field */
};

struct form {
	unsigned char sec, grp, act;
	const char *re;
	/* capture groups (0: none) that give each field; sub holds exim's "helo=X ident=Y" */
	unsigned char helo, rdns, ip, by, ident, sub, id;
	unsigned flags;
};

static const struct form forms[] = {
    /* SquirrelMail/NaSMail webmail: the browser's address, the webmail host */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=.* \\((?:SquirrelMail|NaSMail) authenticated user ).*?(" IP
     ")\\b(?![.-]).{10,80}by (\\S+) with HTTP",
     .ip = 1, .by = 2},
    /* AOL's webmail: the browser's address before "by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=.*aol\\.com)(?=.*with HTTP \\(WebMailUI\\)).*?(" IP ") by (\\S+) \\(" IP
     "\\) with HTTP \\(WebMailUI\\)",
     .ip = 1, .by = 2},
    /* Exchange's SMTPSVC: "from HELO ([IP])", it never looks up rDNS */
    {SEC_FROM, GRP_SMTPSVC, ACT_RELAY,
     "^(\\S*) \\(\\[(" IP ")\\][^\\)]{0,40}\\) by (\\S+) with Microsoft SMTPSVC", .helo = 1,
     .ip = 2, .by = 3},
    /* Exchange's pickup directory: a local submission */
    {SEC_FROM, GRP_SMTPSVC, ACT_IGNORE, "^mail pickup service by (\\S+) with Microsoft SMTPSVC$",
     .flags = 0},
    /* Exchange 2007 and later: the "id" is the server's version */
    {SEC_FROM, GRP_MSSMTP, ACT_RELAY,
     "^(\\S+) \\(\\[?(" IP ")(?:%[A-Z0-9._~-]*)?\\]?\\) by (\\S+) ", .helo = 1, .ip = 2, .by = 3,
     .flags = F_NO_ID},
    /* XMail: "(IP:port)" and its own id and envelope sender */
    {SEC_FROM, GRP_XMAIL, ACT_RELAY,
     "^(\\S+) \\((\\[?" IP "\\]?)(?::\\d+)\\) by (\\S+)(?: \\(\\S+\\))? with \\[XMail", .helo = 1,
     .ip = 2, .by = 3, .flags = F_XMAIL},
    /* ecelerity with a helo= */
    {SEC_FROM, GRP_ECELERITY, ACT_RELAY, "^\\(\\[(" IP "):\\d+\\] helo=(\\S+)\\) by (\\S+) ",
     .ip = 1, .helo = 2, .by = 3},
    /* ecelerity without one */
    {SEC_FROM, GRP_ECELERITY, ACT_RELAY, "^\\S+ \\(\\[(" IP "):\\d+\\]\\) by (\\S+) ", .ip = 1,
     .by = 2},
    /* exim's local submissions (-bs, local-esmtp...): no network handover */
    {SEC_FROM, GRP_EXIM, ACT_IGNORE, "\\bwith local(?:-\\S+)? ", .flags = 0},
    /* exim, no rDNS: "from [IP] (helo=X ident=Y)" */
    {SEC_FROM, GRP_EXIM, ACT_RELAY, "^\\[(" IP ")\\] \\((.*?)\\) by (\\S+) ", .ip = 1, .sub = 2,
     .by = 3},
    /* exim: "from RDNS ([IP] helo=X)"; without helo= the HELO equalled the rDNS */
    {SEC_FROM, GRP_EXIM, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")\\](.*?)\\) by (\\S+) ", .rdns = 1,
     .ip = 2, .sub = 3, .by = 4, .flags = F_HELO_IS_RDNS},
    /* old exim: "from RDNS [IP] by" */
    {SEC_FROM, GRP_EXIM, ACT_RELAY, "^(\\S+) \\[(" IP ")\\](:\\d+)? by (\\S+) ", .rdns = 1,
     .helo = 1, .ip = 2, .by = 4},
    /* any other exim form: pick the pieces (SpamAssassin does the same) */
    {SEC_FROM, GRP_EXIM, ACT_EXIM_LOOSE, "^(\\S+) ", .flags = 0},
    /* Postfix: "from HELO (RDNS [IP])", it always looks up rDNS */
    {SEC_FROM, GRP_POSTFIX, ACT_RELAY, "^(\\S+) \\((\\S+) \\[(" IP ")\\]\\) by (\\S+) ", .helo = 1,
     .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* Postfix without the blank before "[" */
    {SEC_FROM, GRP_POSTFIX, ACT_RELAY, "^(\\S+) \\((\\S+)\\[(" IP ")\\]\\) by (\\S+) ", .helo = 1,
     .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* Scalix */
    {SEC_FROM, GRP_SCALIX, ACT_RELAY, "^(\\S+) \\( ?(" IP ")\\) by (\\S+)", .helo = 1, .ip = 2,
     .by = 3},
    /* Lotus Domino: never records the rDNS */
    {SEC_FROM, GRP_DOMINO, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")\\]\\) by (\\S+) \\(Lotus", .helo = 1,
     .ip = 2, .by = 3},
    /* webmail with a faked numeric HELO */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(?=.*\\bwith HTTP\\b)(" IP ") \\(\\[" IP "\\]\\) by (\\S+)",
     .ip = 1, .by = 2},
    /* sendmail: "from HELO (RDNS [IP])" (qmail-ldap's look-alike is excluded) */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?!.* by \\S+ \\(qmail-\\S+\\) with )(\\S+) \\((\\S+) \\[(" IP ")\\].*\\) by (\\S+) \\(",
     .helo = 1, .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED | F_IDENT_RDNS},
    /* Exchange 5.5's IMS: "from HELO (RDNS [IP]) by X with P (" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S+) \\[(" IP ")\\]\\) by (\\S+) with \\S+ \\(",
     .helo = 1, .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* exim-like "from RDNS ([IP] helo=X)" without the Exim banner */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")\\] helo=(\\S+)\\) by (\\S+) with ",
     .rdns = 1, .ip = 2, .helo = 3, .by = 4},
    /* attbi: "(<unknown...>[IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(<unknown\\S*>\\[(" IP ")\\]\\) by (\\S+) ",
     .helo = 1, .ip = 2, .by = 3},
    /* attbi: "(RDNS[IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S+\\.\\S+)\\[(" IP ")\\]\\) by (\\S+) ",
     .helo = 1, .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* sendmail with an ident and no rDNS: "(ident@[IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S*)\\@\\[(" IP ")\\].*\\) by (\\S+) \\(",
     .helo = 1, .ident = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* Hotmail's web front ends */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(?:(" IP ") )?.*?by (\\S+\\.hotmail\\.msn\\.com) ", .ip = 1,
     .by = 2},
    /* qpsmtpd */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((" IP
     ")\\) by (\\S+) \\(qpsmtpd/\\S+\\) with (?:ESMTP|SMTP)",
     .rdns = 1, .helo = 2, .ip = 3, .by = 4},
    /* LMTP with LHLO */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(LHLO (\\S*)\\) \\((" IP ")\\) by (\\S+) with LMTP",
     .rdns = 1, .helo = 2, .ip = 3, .by = 4},
    /* GMX: "from RDNS (EHLO X) [IP]" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\[(" IP
     ")\\] by (\\S+) \\([^\\)]+\\) with (?:ESMTP|SMTP)",
     .rdns = 1, .helo = 2, .ip = 3, .by = 4},
    /* Raptor's smtpd */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\(\\[(" IP ")\\]\\) by (\\S+) via smtpd \\(for \\S+\\) with SMTP\\(", .helo = 1,
     .ip = 2, .by = 3},
    /* qmail: "from RDNS (HELO X) (ident@IP)"; rDNS is what tcpserver passed, "unknown" if none */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=\\S+(?: \\((?:HELO|EHLO) \\S*\\))? \\((?:\\S+\\@)?\\[?" IP
     "\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by \\S+(?: \\(.+\\))* with (?:.* "
     ")?(?:SMTP|QMQP)(?! id ))(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\((\\S*)\\@\\[?(" IP
     ")\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by (\\S+)",
     .rdns = 1, .helo = 2, .ident = 3, .ip = 4, .by = 5, .flags = F_QMAIL},
    /* qmail: "from RDNS (HELO X) (IP)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=\\S+(?: \\((?:HELO|EHLO) \\S*\\))? \\((?:\\S+\\@)?\\[?" IP
     "\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by \\S+(?: \\(.+\\))* with (?:.* "
     ")?(?:SMTP|QMQP)(?! id ))(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\(\\[?(" IP
     ")\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by (\\S+)",
     .rdns = 1, .helo = 2, .ip = 3, .by = 4, .flags = F_QMAIL},
    /* qmail without HELO (it equalled the rDNS): "from RDNS (ident@IP)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=\\S+(?: \\((?:HELO|EHLO) \\S*\\))? \\((?:\\S+\\@)?\\[?" IP
     "\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by \\S+(?: \\(.+\\))* with (?:.* "
     ")?(?:SMTP|QMQP)(?! id ))(\\S+) \\((\\S*)\\@\\[?(" IP
     ")\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by (\\S+)",
     .rdns = 1, .ident = 2, .ip = 3, .by = 4, .flags = F_QMAIL | F_HELO_IS_RDNS},
    /* qmail without HELO: "from RDNS (IP)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=\\S+(?: \\((?:HELO|EHLO) \\S*\\))? \\((?:\\S+\\@)?\\[?" IP
     "\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by \\S+(?: \\(.+\\))* with (?:.* "
     ")?(?:SMTP|QMQP)(?! id ))(\\S+) \\(\\[?(" IP
     ")\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by (\\S+)",
     .rdns = 1, .ip = 2, .by = 3, .flags = F_QMAIL | F_HELO_IS_RDNS},
    /* any other qmail form: a relay with what the field-wide scan found */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=\\S+(?: \\((?:HELO|EHLO) \\S*\\))? \\((?:\\S+\\@)?\\[?" IP
     "\\]?\\)(?: \\(envelope-sender <\\S+>\\))? by \\S+(?: \\(.+\\))* with (?:.* "
     ")?(?:SMTP|QMQP)(?! id ))",
     .flags = F_QMAIL},
    /* Yahoo's webmail */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) via HTTP$", .ip = 1, .by = 2},
    /* webmail: "from X ( [IP]) as user" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\( \\[(" IP ")\\]\\).*? by (\\S+) ", .ip = 2, .by = 3},
    /* "from (HELO [IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\((\\S+) \\[(" IP ")\\]\\) by (\\S+) ", .helo = 1, .ip = 2,
     .by = 3},
    /* "from [IP] by": no HELO, no rDNS */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) ", .ip = 1, .by = 2},
    /* "from ([IP]) by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\(\\[?(" IP ")\\]?\\) by (\\S+) ", .ip = 1, .by = 2},
    /* MDaemon: "from HELO [IP] by X [IP] with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\[(" IP ")\\] by (\\S+) \\[" IP "\\] with ", .helo = 1,
     .ip = 2, .by = 3, .flags = F_LOOKED},
    /* MDaemon: "from HELO [(IP)]" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\[\\((" IP ")\\)\\] by (\\S+) \\(" IP "\\) ",
     .helo = 1, .ip = 2, .by = 3},
    /* sendmail without rDNS: "from HELO ([IP]) by X (" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")\\]\\) by (\\S+) \\(", .helo = 1, .ip = 2,
     .by = 3, .flags = F_LOOKED},
    /* sendmail-like "from HELO (RDNS [IP]) ... by"; courier's softdnserr means the lookup failed */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S+) \\[(" IP ")\\]\\).*? by (\\S+)\\b", .helo = 1,
     .rdns = 2, .ip = 3, .by = 4, .flags = F_SOFTDNSERR},
    /* "from HELO ([IP.port]) ... by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")(?:[.:]\\d+)?\\]\\).*? by (\\S+) ",
     .helo = 1, .ip = 2, .by = 3, .flags = F_LOOKED},
    /* sendmail with "(authenticated bits=0)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((\\S+) \\[(" IP ")\\]\\)(?: \\(authenticated bits=\\d+\\))? by (\\S+) \\(",
     .helo = 1, .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* a mail fetcher (fetchmail, getmail): the relays after it are the local delivery */
    {SEC_FROM, GRP_ANY, ACT_FETCHER, "with (?:POP3|IMAP)", .flags = 0},
    /* qmail-like "from RDNS (HELO X) (ident@IP)" with other text */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((?:HELO|EHLO) ([^\\)]*)\\) \\((\\S*@)?\\[?(" IP ")\\]?\\).* by (\\S+) ", .rdns = 1,
     .helo = 2, .ident = 3, .ip = 4, .by = 5, .flags = F_LOOKED | F_IDENT_AT},
    /* qmail-like "from RDNS (ident@IP)" with other text */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S*@)?\\[?(" IP ")\\]?\\).* by (\\S+) ", .rdns = 1,
     .ident = 2, .ip = 3, .by = 4, .flags = F_LOOKED | F_IDENT_AT | F_HELO_IS_RDNS},
    /* outblaze's webmail */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) with http for ", .ip = 1, .by = 2},
    /* smap: "from RDNS(IP)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+)\\((" IP ")\\) by (\\S+) via smap ", .rdns = 1, .ip = 2,
     .by = 3, .flags = F_LOOKED},
    /* smap with HELO */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+)\\((" IP "), (?:HELO|EHLO) (\\S*)\\) by (\\S+) via smap ", .rdns = 1, .ip = 2,
     .helo = 3, .by = 4, .flags = F_LOOKED},
    /* Post.Office */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) \\(Post", .ip = 1, .by = 2},
    /* ArGoSoft */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) \\(ArGoSoft", .ip = 1, .by = 2},
    /* InterScan and SMTPL: "from IP by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(" IP ") by (\\S+) \\((?:SMTPL|InterScan)\\b", .ip = 1,
     .by = 2},
    /* BSMTP: a batch, no TCP handover */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ by \\S+ with BSMTP", .flags = 0},
    /* "from HELO (RDNS [IP]) by X with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S+) \\[(" IP ")\\]\\) by (\\S+) with ", .helo = 1,
     .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* Yahoo's SMTP: "(HELO X) (ident@IP with plain)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((?:(\\S+)\\@)?(" IP ").*?\\) by (\\S+) with ",
     .rdns = 1, .helo = 2, .ident = 3, .ip = 4, .by = 5, .flags = F_LOOKED},
    /* CommuniGate Pro: "from [IP] (account X HELO Y)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^\\[(" IP ")\\] \\((?:account \\S+ )?(?:HELO|EHLO) (\\S*)\\) by (\\S+) \\(", .ip = 1,
     .helo = 2, .by = 3},
    /* CommuniGate Pro: "from RDNS ([IP] verified)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(?=.* \\(CommuniGate Pro)(\\S+) \\(\\[(" IP ")\\] verified\\) by (\\S+) \\(", .rdns = 1,
     .ip = 2, .by = 3, .flags = F_LOOKED | F_HELO_IS_RDNS},
    /* "from ([IP]) by X with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\(\\[(" IP ")\\]\\) by (\\S+) with ", .ip = 1, .by = 2},
    /* IronPort and others: "from HELO (IP)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^([^\\d]\\S+) \\((" IP ")\\) by (\\S+) ", .helo = 1, .ip = 2,
     .by = 3},
    /* Content Technologies: no address at all */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\(\\S+\\) by \\S+ \\(Content Technologies ",
     .flags = 0},
    /* "from HELO ([IP] [X])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(\\[(" IP ")\\] \\[(\\S+)\\]\\) by (\\S+) with ",
     .helo = 1, .ip = 2, .by = 4},
    /* Tumbleweed: "from IP by X with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(" IP ") by (\\S+) with ", .ip = 1, .by = 2},
    /* attbi: "from HELO (RDNS[IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((\\S+)\\[(" IP ")\\]\\) by (\\S+) ", .helo = 1,
     .rdns = 2, .ip = 3, .by = 4, .flags = F_LOOKED},
    /* F-Secure: "from [IP]:port (HELO X)" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\]\\S+ \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ",
     .ip = 1, .helo = 2, .by = 3},
    /* "from IP (HELO X) by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(" IP ") \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", .ip = 1,
     .helo = 2, .by = 3},
    /* SMTPD32: "from HELO [IP] by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\[(" IP ")\\] by (\\S+) ", .helo = 1, .ip = 2,
     .by = 3},
    /* csmap: "from RDNS(IP) by" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+)\\((" IP ")\\) by (\\S+) ", .rdns = 1, .ip = 2, .by = 3},
    /* MailGate */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] by (\\S+) \\(MailGate ", .ip = 1, .by = 2},
    /* "from HELO (unverified [IP])" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\(unverified \\[(" IP ")\\]\\) by (\\S+) ", .helo = 1,
     .ip = 2, .by = 3},
    /* "from IP (comment) by X with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(" IP ") \\([A-Za-z][^\\)]+\\) by (\\S+) with ", .ip = 1,
     .by = 2},
    /* "from [IP] (helo=X ident=Y)" of CommuniGate, Nemesis and others */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^\\[(" IP ")\\] \\(([^\\)]+)\\) by (\\S+) ", .ip = 1, .sub = 2,
     .by = 3},
    /* "from RDNS (ident@IP) by X with" */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^(\\S+) \\((?:\\S+\\@)?(" IP ")\\) by (\\S+) with ", .rdns = 1,
     .ip = 2, .by = 3},
    /* Obtuse smtpd: "from RDNS(IP), claiming to be \"HELO\"" */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+)\\((" IP ")\\)(?:, claiming to be \\\"(\\S+)\\\")? via \\S+ by (\\S+),", .rdns = 1,
     .ip = 2, .helo = 3, .by = 4, .flags = F_OBTUSE},
    /* Yahoo's authenticated SMTP */
    {SEC_FROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((\\S+)@(" IP ") with login\\) by (\\S+\\.yahoo\\.com) with SMTP", .helo = 1,
     .ip = 3, .by = 4},
    /* X-Originating-IP made into a Received field */
    {SEC_FROM, GRP_ANY, ACT_RELAY, "^X-Originating-IP: (" IP ")$", .ip = 1, .flags = F_NO_BY},
    /* a local user's handover: "from X (user@localhost) by" */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\([^\\s\\@]+\\@" LH "\\) by \\S+ \\(", .flags = 0},
    /* exim's local submission with -oMr */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\S+ by \\S+ with local-e?smtp ", .flags = 0},
    /* AVG's local proxy */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^127\\.0\\.0\\.1 \\(AVG SMTP \\S+ \\[\\S+\\]\\)", .flags = 0},
    /* qmail-scanner by uid */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+\\@\\S+ by \\S+ by uid \\S+ ", .flags = 0},
    /* "from user@domain by": a local submission */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+\\@\\S+ by \\S+ ", .flags = 0},
    /* mailcity's Unknown/Local */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^Unknown/Local \\(", .flags = 0},
    /* localhost to localhost */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^" LH " \\((?:\\S+\\@)?" LH "[\\)\\[]", .flags = 0},
    /* "from X (localhost) " */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\((?:\\S+\\@)?" LH "\\) ", .flags = 0},
    /* "from X (user@host [localhost])" */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\(\\S+\\@\\S+ \\[" LH "\\]\\) ", .flags = 0},
    /* courier's AUTH without an address */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\(AUTH: \\S+\\) by \\S+ with ", .flags = 0},
    /* a Unix socket */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^localhost \\(localhost \\[\\[UNIX: localhost\\]\\]\\) by ",
     .flags = 0},
    /* Amazon's internal traffic */
    {SEC_FROM, GRP_ANY, ACT_IGNORE,
     "^\\S+\\.amazon\\.com by \\S+\\.amazon\\.com with ESMTP \\(peer crosscheck: ", .flags = 0},
    /* GroupWise's internal handover */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^[^\\.]+ by \\S+ with Novell_GroupWise", .flags = 0},
    /* behind a Raptor firewall */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^no\\.name\\.available by \\S+ via smtpd \\(for ", .flags = 0},
    /* qmail-scanner's log line (the handover is in the field before it) */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ by \\S+ \\(.{0,100}\\) with qmail-scanner",
     .flags = F_QMS},
    /* "from X by Y with local" */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ by \\S+ with local", .flags = 0},
    /* Cyrus over a Unix socket */
    {SEC_FROM, GRP_ANY, ACT_IGNORE,
     "^\\S+ \\(\\[unix socket\\]\\) by \\S+ \\(Cyrus v[0-9]*?\\.[0-9]*?\\.[0-9]*?\\) with LMTPA",
     .flags = 0},
    /* MTAs that log no address (PMDF, smtpd...) */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ by \\S+ (?:with|via|for|\\()", .flags = 0},
    /* "from X with LMTP by", "(unverified) by" */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ (?:(?:with|via|for) \\S+|\\(unverified\\)) by\\b",
     .flags = 0},
    /* SendGrid's HTTP API */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\(unknown\\) by \\S+ \\(SG\\) with \\b", .flags = 0},
    /* OpenSMTPD's local submission */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ \\(\\S+ \\[local\\]\\) by \\S+ \\(OpenSMTPD\\) with \\b",
     .flags = 0},
    /* LSMTP */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "\\(LSMTP for", .flags = 0},
    /* MailEnable's local handover */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\(\\[" LH "\\]\\) with MailEnable ", .flags = 0},
    /* Facebook's Thrift */
    {SEC_FROM, GRP_ANY, ACT_IGNORE,
     "^facebook\\.com \\([^\\)]+\\) by facebook\\.com with Thrift id \\S+$", .flags = 0},
    /* Gmail's API */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ named \\S+ by gmailapi\\.google\\.com with HTTPREST$",
     .flags = 0},
    /* "from X id Y" */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\S+ id \\S+$", .flags = 0},
    /* Jetsend */
    {SEC_FROM, GRP_ANY, ACT_IGNORE, "^\\[<.*? \\(Jetsend", .flags = 0},
    /* Norton AntiVirus Gateway: "(from HELO [IP])" */
    {SEC_PFROM, GRP_ANY, ACT_RELAY, "^(\\S*) \\[(" IP ")\\]\\) by (\\S+) \\(NAVGW .*?\\) with ",
     .helo = 1, .ip = 2, .by = 3},
    /* sendmail's command line submission: "(from user@localhost)" */
    {SEC_PFROM, GRP_ANY, ACT_IGNORE, "^\\S+\\@localhost\\) by \\S+ ", .flags = 0},
    /* jqueuemail's submission */
    {SEC_PFROM, GRP_ANY, ACT_IGNORE, "^[^\\s\\@]+\\@[^)]+\\) by \\S+\\(jqueuemail\\) id [^\\s;]+",
     .flags = 0},
    /* simta (upper-case FROM/BY/ID) */
    {SEC_UFROM, GRP_ANY, ACT_RELAY,
     "^(\\S+) \\((\\S+) \\[(" IP
     ")\\]\\) BY (\\S+) (?:\\([^\\)]+\\) WITH SMTP )?ID <?(\\S+?)>?(?: FOR <[^>]+>)?$",
     .helo = 1, .rdns = 2, .ip = 3, .by = 4, .id = 5, .flags = F_LOOKED | F_UNVERIFIED},
};
#define FORMS_N (sizeof(forms) / sizeof(forms[0]))

/* The parts read before the form table: SpamAssassin reads them from the whole field first. */
enum {
	PRE_LOCAL_FOR, /* exim's "with local for": a local delivery */
	PRE_NO_ADDR,   /* "from X by Y ;": no address, nothing to read */
	PRE_DATE,      /* the date at the end */
	PRE_ID,
	PRE_HELO_EQ,
	PRE_HELO,
	PRE_BY,
	PRE_ENVFROM,
	PRE_FALLBACK_IP,
	PRE_HELO_GUESS,
	PRE_XMAIL_ID,
	PRE_XMAIL_FROM,
	PRE_EXIM_HELO,
	PRE_EXIM_IP,
	PRE_EXIM_BY,
	PRE_N
};
#define HELO_CHARS "[-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\/]"
static const char *const pre_re[PRE_N] = {
    [PRE_LOCAL_FOR] = "\\bwith local for\\b",
    [PRE_NO_ADDR] = "(?i)^from (\\S+) by [^\\s;]+ ?;",
    [PRE_DATE] =
        "[\\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\\d+ "
        "(?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \\d+ \\d+:\\d+(?::\\d+)? \\S+$",
    [PRE_ID] = " id <?([^\\s<>;]{3,})",
    [PRE_HELO_EQ] = "\\bhelo=(" HELO_CHARS "+)(?:[^-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\/]|$)",
    [PRE_HELO] = "\\b(?:HELO|EHLO) (" HELO_CHARS "+)(?:[^-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\/]|$)",
    [PRE_BY] = " by (\\S+)(?:[^-A-Za-z0-9\\;\\.]|$)",
    [PRE_ENVFROM] = "(?i)(?:return-path:? |envelope-(?:sender|from)[ =])(\\S+)\\b",
    [PRE_FALLBACK_IP] = "\\[(" IP ")\\]",
    [PRE_HELO_GUESS] = "^(\\S+)[^-A-Za-z0-9\\.]",
    [PRE_XMAIL_ID] = " id <(\\S+)>",
    [PRE_XMAIL_FROM] = " from <(\\S+)>",
    [PRE_EXIM_HELO] = " \\((\\S+)\\) ",
    [PRE_EXIM_IP] = " \\[(" IP ")(?:\\.\\d+)?\\] ",
    [PRE_EXIM_BY] = "by (\\S+) ",
};

/*
 * Who authenticated, as SpamAssassin names it (auth=): the first that
 * matches. An authenticated relay is trusted.
 */
enum { AUTH_GROUP, AUTH_FIXED, AUTH_GMAIL, AUTH_GMX, AUTH_POSTFIX };
static const struct {
	const char *re;
	unsigned char kind;
	const char *fixed;
} auths[] = {
    /* RFC 3848's ESMTPA and kin, exim's ASMTP, webmail's HTTP */
    {"(?i)^(?=.* by ).*? with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", AUTH_GROUP,
     NULL},
    /* Gmail submits with ESMTPS and a "sm" id */
    {" by mx\\.google\\.com with ESMTPS id "
     "[a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\\.[0-9]{1,3}\\.[0-9]{4}\\."
     "(?:[0-6][0-9]\\.){4}[0-6][0-9](?=.*\\(version=([^ ]+) cipher=([^\\)]+)\\))",
     AUTH_GMAIL, NULL},
    /* Courier */
    {"^from .*?(?:\\]\\)|\\)\\]) \\(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \\S+(?:, .*?)?\\) by ",
     AUTH_GROUP, NULL},
    /* sendmail, MDaemon and webmailers: "(authenticated ...)" */
    {"^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by", AUTH_FIXED,
     "Sendmail"},
    /* GMX authenticates without saying so */
    {"from \\S* \\((?:HELO|EHLO) (\\S*)\\) \\[" IP
     "\\] by (mail\\.gmx\\.(?:net|com)) \\([^\\)]+\\) with "
     "((?:ESMTP|SMTP))",
     AUTH_GMX, NULL},
    /* Critical Path */
    {"\\) by .+ \\(\\d{1,2}\\.\\d\\.\\d{3}(?:\\.\\d{1,3})?\\) \\(authenticated as .+\\) id ",
     AUTH_FIXED, "CriticalPath"},
    /* Postfix's smtpd_sasl_authenticated_header */
    {"\\) \\(Authenticated sender: \\S+\\) by \\S+ \\(([^\\)]+)\\) with ", AUTH_POSTFIX, NULL},
    /* CommuniGate Pro's account */
    {"^(?=.*CommuniGate Pro (?:HTTP|SMTP|XIMSS|IMAP)).* \\(account ", AUTH_FIXED, "Communigate"},
    /* Exchange's webmail */
    {" with Microsoft Exchange Server HTTP-DAV\\b", AUTH_FIXED, "HTTP-DAV"},
    /* "(via HTTP)" of United Internet */
    {"(?i)^(?=.* by ).*? \\(via (HTTP.?)\\)(?: |;|$)", AUTH_GROUP, NULL},
};
#define AUTHS_N (sizeof(auths) / sizeof(auths[0]))

static pthread_once_t re_once = PTHREAD_ONCE_INIT;
static pcre2_code *form_code[FORMS_N], *pre_code[PRE_N], *auth_code[AUTHS_N], *grp_code[GRP_N];
static pcre2_match_context *match_ctx;

/*
 * For the forms, the authentication patterns and the MTA guards, tried
 * one after another on every field: the strings one of which every match
 * holds (rules_lit.c's reading of the pattern, lower case), so a pattern
 * whose strings are not in the field is not run. A field went through
 * about 40 patterns, a tenth of a millisecond a message.
 */
struct lits {
	char **s;
	size_t count; /* 0: none known, the pattern always runs */
};
static struct lits form_lits[FORMS_N], auth_lits[AUTHS_N], grp_lits[GRP_N];

static struct lits lits_of(const char *re)
{
	struct rule t = {.type = RULES_T_HEADER, .pattern = (char *)re};
	rules_lit_extract(&t);
	free(t.litlen); /* strstr() needs no lengths */
	return (struct lits){t.lits, t.nlits};
}

/*
 * Whether low (a field in lower case) may hold a match: one of l's
 * strings is in it. strstr(), not memmem(): glibc's is the vectorised
 * one, and neither a field nor these strings hold a NUL.
 */
static bool lits_in(const struct lits *l, const char *low)
{
	if (l->count == 0)
		return true;
	for (size_t i = 0; i < l->count; i++)
		if (strstr(low, l->s[i]) != NULL)
			return true;
	return false;
}

static pcre2_code *compile(const char *re)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
	/* a built-in pattern that fails to compile is a bug: it never matches (the tests catch it)
	 */
	if (c != NULL)
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	return c;
}

static void compile_all(void)
{
	for (size_t i = 0; i < FORMS_N; i++)
		form_code[i] = compile(forms[i].re), form_lits[i] = lits_of(forms[i].re);
	for (size_t i = 0; i < PRE_N; i++)
		pre_code[i] = compile(pre_re[i]);
	for (size_t i = 0; i < AUTHS_N; i++)
		auth_code[i] = compile(auths[i].re), auth_lits[i] = lits_of(auths[i].re);
	for (size_t i = 1; i < GRP_N; i++)
		grp_code[i] = compile(grp_guard[i]), grp_lits[i] = lits_of(grp_guard[i]);
	match_ctx = pcre2_match_context_create(NULL);
	if (match_ctx != NULL) {
		pcre2_set_match_limit(match_ctx, MATCH_LIMIT);
		pcre2_set_depth_limit(match_ctx, MATCH_LIMIT);
	}
}

void rules_relays_prepare(void)
{
	pthread_once(&re_once, compile_all);
}

/* One match of code against s; the offsets in md. */
static bool match(pcre2_code *code, const char *s, pcre2_match_data *md)
{
	return code != NULL && pcre2_match(code, (PCRE2_SPTR)s, strlen(s), 0, 0, md, match_ctx) > 0;
}

/* Group g of the last match into out ("" when it did not take part). */
static void group(pcre2_match_data *md, const char *s, unsigned g, char *out, size_t outlen)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	out[0] = '\0';
	if (g == 0 || g >= pcre2_get_ovector_count(md) || ov[2 * g] == PCRE2_UNSET)
		return;
	size_t n = ov[2 * g + 1] - ov[2 * g];
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, s + ov[2 * g], n);
	out[n] = '\0';
}

static bool pre(int which, const char *s, pcre2_match_data *md, char *out, size_t outlen)
{
	if (!match(pre_code[which], s, md))
		return false;
	if (out != NULL)
		group(md, s, 1, out, outlen);
	return true;
}

/* exim's "helo=X ident=Y" inside its comment: the first token after each */
static void exim_sub(const char *sub, struct relay *r)
{
	const char *h = strstr(sub, "helo="), *i = strstr(sub, "ident=");
	if (h != NULL && !isspace((unsigned char)h[5])) {
		size_t n = strcspn(h + 5, " \t");
		snprintf(r->helo, sizeof(r->helo), "%.*s", (int)n, h + 5);
	}
	if (i != NULL) {
		size_t n = strcspn(i + 6, " \t");
		snprintf(r->ident, sizeof(r->ident), "%.*s", (int)n, i + 6);
	}
}

/* low: s in lower case */
static void find_auth(const char *s, const char *low, pcre2_match_data *md, struct relay *r)
{
	for (size_t i = 0; i < AUTHS_N; i++) {
		if (!lits_in(&auth_lits[i], low) || !match(auth_code[i], s, md))
			continue;
		char a[RELAY_TOKEN_BYTES], b[RELAY_TOKEN_BYTES], c[RELAY_TOKEN_BYTES];
		switch (auths[i].kind) {
		case AUTH_GROUP: group(md, s, 1, r->auth, sizeof(r->auth)); break;
		case AUTH_FIXED: snprintf(r->auth, sizeof(r->auth), "%s", auths[i].fixed); break;
		case AUTH_GMAIL:
			group(md, s, 1, a, sizeof(a));
			group(md, s, 2, b, sizeof(b));
			snprintf(r->auth, sizeof(r->auth), "GMail - transport=%.100s cipher=%.100s",
			         a, b);
			break;
		case AUTH_GMX:
			group(md, s, 2, b, sizeof(b));
			group(md, s, 3, c, sizeof(c));
			snprintf(r->auth, sizeof(r->auth), "GMX (%.100s / %.100s)", c, b);
			break;
		case AUTH_POSTFIX:
			group(md, s, 1, a, sizeof(a));
			if (strcmp(a, "Postfix") == 0)
				snprintf(r->auth, sizeof(r->auth), "Postfix");
			else
				snprintf(r->auth, sizeof(r->auth), "Postfix (%.200s)", a);
			break;
		}
		return;
	}
}

/* SpamAssassin marks characters no host name has with '!' ("[1.2.3.4]" -> "!1.2.3.4!"). */
static void bang(char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || strchr("#[]()<>|", *s) != NULL)
			*s = '!';
}

/* "<a@b>" -> "a@b" */
static void clean_envfrom(char *e)
{
	size_t lead = strspn(e, " <");
	memmove(e, e + lead, strlen(e + lead) + 1);
	size_t el = strlen(e);
	while (el > 0 && (e[el - 1] == '>' || e[el - 1] == ' '))
		e[--el] = '\0';
	bang(e);
}

static void clean_ip(char *ip)
{
	if (strncasecmp(ip, "IPv6:", 5) == 0)
		memmove(ip, ip + 5, strlen(ip + 5) + 1);
	if (ip[0] == '[')
		memmove(ip, ip + 1, strlen(ip));
	size_t n = strlen(ip);
	if (n > 0 && ip[n - 1] == ']')
		ip[--n] = '\0';
	char *pct = strchr(ip, '%'); /* an IPv6 zone */
	if (pct != NULL &&
	    pct[strspn(pct + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                        "0123456789._~-") +
	        1] == '\0')
		*pct = '\0';
	/* "::ffff:1.2.3.4" is the IPv4 address */
	const char *last = strrchr(ip, ':');
	if (last != NULL && last - ip >= 6 && strncasecmp(last - 4, "ffff", 4) == 0 &&
	    strchr(last, '.') != NULL && strspn(ip, "0:") == (size_t)(last - 4 - ip))
		memmove(ip, last + 1, strlen(last + 1) + 1);
}

/* "[1.2.3.4]": digits and dots in brackets */
static bool bracketed_v4(const char *t)
{
	size_t n = strlen(t);
	return n > 2 && t[0] == '[' && t[n - 1] == ']' && strspn(t + 1, "0123456789.") == n - 2;
}

/*
 * Reads one Received field value into r: 1 a relay, 0 a field ignored on
 * purpose, -1 one no form reads. *fetcher is set for a mail fetcher's
 * marker (ignored too).
 */
static int parse_received(const char *raw, struct relay *r, bool *fetcher)
{
	pthread_once(&re_once, compile_all);
	*fetcher = false;
	memset(r, 0, sizeof(*r));
	char line[FIELD_BYTES];
	size_t n = 0;
	/* blanks and line breaks collapsed to one space, none at either end */
	for (const char *p = raw; *p && n + 1 < sizeof(line); p++) {
		if (isspace((unsigned char)*p)) {
			if (n > 0 && line[n - 1] != ' ')
				line[n++] = ' ';
		} else {
			line[n++] = *p;
		}
	}
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == ';'))
		n--; /* the trailing blanks and stray semicolons */
	line[n] = '\0';
	if (strncasecmp(line, "from ", 5) != 0 && strncasecmp(line, "(from ", 6) != 0)
		return 0; /* "(qmail 123 invoked by uid 1)", "by host (Postfix, from userid 1)"...
		           */

	pcre2_match_data *md = pcre2_match_data_create(16, NULL);
	if (md == NULL)
		return -1;
	int rc = -1;
	char t[RELAY_TOKEN_BYTES];
	if (pre(PRE_LOCAL_FOR, line, md, NULL, 0)) {
		rc = 0;
		goto out;
	}
	if (pre(PRE_NO_ADDR, line, md, t, sizeof(t)) && !bracketed_v4(t)) {
		rc = 0;
		goto out;
	}
	if (match(pre_code[PRE_DATE], line, md))
		line[pcre2_get_ovector_pointer(md)[0]] = '\0';
	char *pb = strstr(line, ")by "); /* "(localhost [127.0.0.1])by host" */
	if (pb != NULL) {
		memmove(pb + 2, pb + 1, strlen(pb + 1) + 1);
		pb[1] = ' ';
	}
	pre(PRE_ID, line, md, r->id, sizeof(r->id));
	if (!pre(PRE_HELO_EQ, line, md, r->helo, sizeof(r->helo)))
		pre(PRE_HELO, line, md, r->helo, sizeof(r->helo));
	pre(PRE_BY, line, md, r->by, sizeof(r->by));
	char low[FIELD_BYTES];
	size_t nl = strlen(line);
	for (size_t i = 0; i <= nl; i++)
		low[i] = (char)tolower((unsigned char)line[i]);
	find_auth(line, low, md, r);

	const char *s;
	int sec;
	if (strncmp(line, "from ", 5) == 0)
		s = line + 5, sec = SEC_FROM;
	else if (strncmp(line, "(from ", 6) == 0)
		s = line + 6, sec = SEC_PFROM;
	else if (strncmp(line, "FROM ", 5) == 0)
		s = line + 5, sec = SEC_UFROM;
	else
		s = line, sec = -1;
	const char *ls = low + (s - line); /* s in lower case */
	bool envfrom = false;
	if (sec == SEC_FROM)
		envfrom = pre(PRE_ENVFROM, s, md, r->envfrom, sizeof(r->envfrom));
	int grp = GRP_ANY;
	if (sec == SEC_FROM)
		for (int g = 1; g < GRP_N && grp == GRP_ANY; g++)
			if (lits_in(&grp_lits[g], ls) && match(grp_code[g], s, md))
				grp = g;

	const struct form *f = NULL;
	for (size_t i = 0; i < FORMS_N && f == NULL; i++) {
		if (forms[i].sec != sec || (forms[i].grp != GRP_ANY && forms[i].grp != grp))
			continue;
		if (!lits_in(&form_lits[i], ls) || !match(form_code[i], s, md))
			continue;
		if (forms[i].act == ACT_IGNORE || forms[i].act == ACT_FETCHER) {
			*fetcher = forms[i].act == ACT_FETCHER;
			if ((forms[i].flags & F_QMS) && envfrom) {
				clean_envfrom(r->envfrom);
				r->qms = true;
			}
			rc = 0;
			goto out;
		}
		if (forms[i].act == ACT_EXIM_LOOSE) {
			/* "from RDNS (HELO) [IP.port] (ident) by": take what is there */
			group(md, s, 1, r->rdns, sizeof(r->rdns));
			pre(PRE_EXIM_HELO, s, md, r->helo, sizeof(r->helo));
			pre(PRE_EXIM_IP, s, md, r->ip, sizeof(r->ip));
			if (pre(PRE_EXIM_BY, s, md, r->by, sizeof(r->by)) && r->ip[0])
				f = &forms[i];
			continue;
		}
		f = &forms[i];
		const unsigned char *gs[] = {&f->rdns, &f->helo, &f->ip, &f->by, &f->ident, &f->id};
		char *outs[] = {r->rdns, r->helo, r->ip, r->by, r->ident, r->id};
		size_t lens[] = {sizeof(r->rdns), sizeof(r->helo),  sizeof(r->ip),
		                 sizeof(r->by),   sizeof(r->ident), sizeof(r->id)};
		for (size_t k = 0; k < sizeof(gs) / sizeof(gs[0]); k++)
			if (*gs[k])
				group(md, s, *gs[k], outs[k], lens[k]);
		if (f->flags & F_HELO_IS_RDNS)
			snprintf(r->helo, sizeof(r->helo), "%s", r->rdns);
		if (f->sub) {
			group(md, s, f->sub, t, sizeof(t));
			exim_sub(t, r);
		}
		if (f->flags & F_LOOKED)
			r->looked_up = true;
		if (f->flags & F_IDENT_RDNS) {
			const char *rd = r->rdns;
			if (strncmp(rd, "IDENT:", 6) == 0 && strchr(rd, '@') != NULL) {
				size_t k = strcspn(rd + 6, "@");
				snprintf(r->ident, sizeof(r->ident), "%.*s", (int)k, rd + 6);
				memmove(r->rdns, rd + 7 + k, strlen(rd + 7 + k) + 1);
			}
			char *at = strchr(r->rdns, '@');
			if (at != NULL) {
				snprintf(r->ident, sizeof(r->ident), "%.*s", (int)(at - r->rdns),
				         r->rdns);
				memmove(r->rdns, at + 1, strlen(at + 1) + 1);
			}
		}
		size_t il = strlen(r->ident);
		if ((f->flags & F_IDENT_AT) && il > 0 && r->ident[il - 1] == '@')
			r->ident[il - 1] = '\0';
		if (f->flags & F_SOFTDNSERR) {
			r->looked_up = strcmp(r->rdns, "softdnserr") != 0;
			if (!r->looked_up)
				r->rdns[0] = '\0';
		}
		if (f->flags & F_QMAIL) {
			r->looked_up = strcmp(r->rdns, "unknown") != 0;
			if (!r->looked_up)
				r->rdns[0] = '\0';
		}
		if (f->flags & F_OBTUSE)
			r->looked_up = strcmp(r->rdns, "UNKNOWN") != 0;
		if ((f->flags & F_UNVERIFIED) && strcmp(r->rdns, "unverified") == 0)
			r->rdns[0] = '\0';
		if (f->flags & F_NO_ID)
			r->id[0] = '\0';
		if (f->flags & F_NO_BY)
			r->by[0] = '\0';
		if (f->flags & F_XMAIL) {
			pre(PRE_XMAIL_ID, s, md, r->id, sizeof(r->id));
			envfrom |= pre(PRE_XMAIL_FROM, s, md, r->envfrom, sizeof(r->envfrom));
		}
	}
	if (f == NULL) {
		/* no form: a relay if an address in brackets and a receiving host are there */
		if (sec == SEC_FROM && !r->helo[0])
			pre(PRE_HELO_GUESS, s, md, r->helo, sizeof(r->helo));
		if (!r->ip[0])
			pre(PRE_FALLBACK_IP, s, md, r->ip, sizeof(r->ip));
		if (!r->ip[0] || !r->by[0])
			goto out;
	}

	/* as SpamAssassin: no trailing dot, "unknown" and "[...]" are no name */
	size_t rl = strlen(r->rdns);
	while (rl > 0 && r->rdns[rl - 1] == '.')
		r->rdns[--rl] = '\0';
	if (strcasecmp(r->rdns, "unknown") == 0 || r->rdns[0] == '[')
		r->rdns[0] = '\0';
	clean_ip(r->ip);
	size_t bl = strlen(r->by);
	if (bl > 0 && r->by[bl - 1] == ';')
		r->by[bl - 1] = '\0';
	bang(r->ip);
	bang(r->rdns);
	bang(r->helo);
	bang(r->by);
	bang(r->ident);
	if (envfrom)
		clean_envfrom(r->envfrom);
	rc = 1;
out:
	pcre2_match_data_free(md);
	return rc;
}

static bool ip_private(const char *ip)
{
	unsigned a, b;
	if (strchr(ip, ':') != NULL)
		return strcmp(ip, "::1") == 0 || strncasecmp(ip, "fe80:", 5) == 0 ||
		       strncasecmp(ip, "fc", 2) == 0 || strncasecmp(ip, "fd", 2) == 0;
	if (sscanf(ip, "%u.%u", &a, &b) != 2)
		return false;
	return a == 10 || a == 127 || (a == 172 && b >= 16 && b <= 31) || (a == 192 && b == 168) ||
	       (a == 169 && b == 254);
}

static void relay_str(abuf_t *b, const struct relay *r, bool internal)
{
	if (b->len)
		abuf_putc(b, ' ');
	abuf_printf(
	    b, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s auth=%s msa=0 ]",
	    r->ip, r->rdns, r->helo, r->by, r->ident, r->envfrom, internal ? 1 : 0, r->id, r->auth);
}

void rules_relays(arena_t *a, msg_t *m, const char **trusted, const char **untrusted,
                  size_t *rcvd_trusted, const bool **no_rdns, size_t *unparseable)
{
	*rcvd_trusted = 0;
	*unparseable = 0;
	bool *nr = arena_zalloc(a, (RELAYS_MAX + 1) * sizeof(*nr));
	size_t nu = 0;
	*no_rdns = nr;
	abuf_t t, u;
	abuf_init(&t, a, 128);
	abuf_init(&u, a, 256);
	bool in_trusted = true;
	struct relay r;
	const char *cip = msg_client_ip(m);
	size_t k = 0;
	if (cip != NULL) {
		/* the milter knows the client first-hand; skip the MTA's own Received for it */
		memset(&r, 0, sizeof(r));
		snprintf(r.ip, sizeof(r.ip), "%s", cip);
		const char *name = msg_client_name(m);
		if (name && strcasecmp(name, "unknown") != 0 && name[0] != '[')
			snprintf(r.rdns, sizeof(r.rdns), "%s", name);
		if (msg_helo(m))
			snprintf(r.helo, sizeof(r.helo), "%s", msg_helo(m));
		if (msg_auth(m))
			snprintf(r.auth, sizeof(r.auth), "%s", "ESMTPA");
		const char *top = msg_header_get(m, "Received", 0);
		struct relay first;
		bool fetcher;
		if (top && parse_received(top, &first, &fetcher) > 0 &&
		    strcmp(first.ip, r.ip) == 0) {
			snprintf(r.by, sizeof(r.by), "%s", first.by);
			snprintf(r.id, sizeof(r.id), "%s", first.id);
			k = 1;
		}
		in_trusted = ip_private(r.ip) || r.auth[0];
		relay_str(in_trusted ? &t : &u, &r, in_trusted);
		if (!in_trusted) /* the MTA that tells the milter its client looked it up */
			nr[nu++] = r.rdns[0] == '\0';
		if (in_trusted)
			*rcvd_trusted = k; /* the MTA's own field, if it wrote one */
	}
	char qms[RELAY_TOKEN_BYTES] = "";
	for (const char *v; k < RELAYS_MAX && (v = msg_header_get(m, "Received", k)) != NULL; k++) {
		bool fetcher;
		char from_qms[RELAY_TOKEN_BYTES];
		snprintf(from_qms, sizeof(from_qms), "%s", qms);
		qms[0] = '\0';
		int rc = parse_received(v, &r, &fetcher);
		if (rc == 0 && r.qms)
			snprintf(qms, sizeof(qms), "%s", r.envfrom);
		if (rc > 0 && from_qms[0])
			snprintf(r.envfrom, sizeof(r.envfrom), "%s", from_qms);
		if (rc < 0)
			(*unparseable)++; /* kept out of the list, as SpamAssassin does, but counted
			                   */
		if (fetcher && in_trusted) {
			/*
			 * A mail fetcher's marker: the relays above it are the local
			 * delivery. Inside the trusted part, start again below it.
			 */
			t.len = 0;
			t.data[0] = '\0';
		}
		if (rc <= 0) {
			/* SpamAssassin counts a field without a relay on the side it sits */
			if (in_trusted)
				*rcvd_trusted = k + 1;
			continue;
		}
		if (in_trusted && !ip_private(r.ip) && !r.auth[0])
			in_trusted = false;
		relay_str(in_trusted ? &t : &u, &r, in_trusted);
		if (!in_trusted)
			nr[nu++] = r.looked_up && r.rdns[0] == '\0';
		if (in_trusted)
			*rcvd_trusted = k + 1;
	}
	*trusted = t.data;
	*untrusted = u.data;
}

int rules_relays_parse_one(const char *field, char *out, size_t outlen)
{
	struct relay r;
	bool fetcher;
	int rc = parse_received(field, &r, &fetcher);
	if (rc > 0)
		snprintf(out, outlen,
		         "ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s id=%s auth=%s no_rdns=%d",
		         r.ip, r.rdns, r.helo, r.by, r.ident, r.envfrom, r.id, r.auth,
		         r.looked_up && r.rdns[0] == '\0');
	return rc;
}
