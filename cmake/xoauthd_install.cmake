# Run by `cmake --install` (install(SCRIPT)): the parts whose paths depend on the prefix given
# at install time (`cmake --install BUILD --prefix /usr`), not the one given at configure time.
#   - the configuration goes to /etc/xoauthd when the prefix is /usr (Debian), else
#     PREFIX/etc/xoauthd; an existing file is never overwritten (it holds secrets and edits);
#   - the systemd unit gets ExecStart= and the -c path of this prefix.
set(_prefix "${CMAKE_INSTALL_PREFIX}")
if(_prefix STREQUAL "/usr")
  set(_etc "/etc")
else()
  set(_etc "${_prefix}/etc")
endif()
set(_dest "$ENV{DESTDIR}")

set(_conf "${_dest}${_etc}/xoauthd/xoauthd.ini")
if(EXISTS "${_conf}")
  message(STATUS "Keeping existing ${_conf}")
else()
  # file(INSTALL) adds $DESTDIR itself.
  file(INSTALL "${XOAUTHD_SRC}/conf/xoauthd.ini" DESTINATION "${_etc}/xoauthd"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
endif()

file(READ "${XOAUTHD_SRC}/contrib/systemd/xoauthd.service" _unit)
string(REPLACE "/usr/bin/xoauthd" "${_prefix}/bin/xoauthd" _unit "${_unit}")
string(REPLACE "/etc/xoauthd/" "${_etc}/xoauthd/" _unit "${_unit}")
if(IS_ABSOLUTE "${XOAUTHD_UNIT_DIR}")
  set(_unitdir "${_dest}${XOAUTHD_UNIT_DIR}")
else()
  set(_unitdir "${_dest}${_prefix}/${XOAUTHD_UNIT_DIR}")
endif()
file(MAKE_DIRECTORY "${_unitdir}")
file(WRITE "${_unitdir}/xoauthd.service" "${_unit}")
message(STATUS "Installing: ${_unitdir}/xoauthd.service")
