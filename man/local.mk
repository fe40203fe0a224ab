# man/local.mk — manual pages (mdoc), linted with mandoc when it exists.
dist_man_MANS += man/forkfs-minivm.1
EXTRA_DIST += man/mandoc-lint.sh
if HAVE_MANDOC
TESTS += man/mandoc-lint.sh
endif
